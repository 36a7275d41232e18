// Issue 15 (file upload) with the official SDKs on the standard ports: azure-iot-device's
// uploadToBlob (over Mqtt and Http) and the getBlobSharedAccessSignature + notifyBlobUploadStatus
// pair write byte-exact blobs to the hub's embedded Azurite, which @azure/storage-blob reads back
// with the connection string the hub prints; azure-iothub's file notification receiver gets one
// notification per upload. Bad input: another device's path, a SAS used for another blob or after
// it expired, an 11th concurrent upload, an unknown correlation id.
import { createHash } from 'node:crypto'
import { Readable } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Client as DeviceClient } from 'azure-iot-device'
import { Http } from 'azure-iot-device-http'
import { Mqtt } from 'azure-iot-device-mqtt'
import { Client as ServiceClient } from 'azure-iothub'
import type { Message as AmqpMessage } from 'azure-iot-common'
import { BlobServiceClient, BlockBlobClient } from '@azure/storage-blob'
import { startTestHub, type TestHub } from './helpers/test-hub.js'

let t: TestHub
let ownerConnectionString: string
beforeAll(async () => {
  if (!process.env.NODE_EXTRA_CA_CERTS) throw new Error('run through `npm test`: the SDKs need NODE_EXTRA_CA_CERTS set at process start')
  t = await startTestHub({ httpsPort: 443, mqttPort: 8883, amqpPort: 5671 })
  ownerConnectionString = `HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=${t.policyKey('iothubowner')}`
  // test hubs start their blob store on first use; the connection string exists once it runs
  await t.hub.blobStore.open()
}, 30_000)
afterAll(async () => { await t?.stop() })

const deviceClient = async (deviceId: string, transport: typeof Mqtt | typeof Http) => {
  const { primaryKey } = await t.createDevice(deviceId)
  return { client: DeviceClient.fromConnectionString(`HostName=localhost;DeviceId=${deviceId};SharedAccessKey=${primaryKey}`, transport), primaryKey }
}

/** Bytes that vary with their offset, so a shifted or truncated copy cannot compare equal. */
function pattern(size: number): Buffer {
  const b = Buffer.alloc(size)
  for (let i = 0; i < size; i++) b[i] = (i * 31 + (i >>> 9)) & 0xff
  return b
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')

/** The file notifications the service receives over AMQP, as the SDK's receiver gives them. */
async function notificationReceiver(): Promise<{ next(count: number): Promise<Record<string, unknown>[]>; close(): Promise<void> }> {
  const service = ServiceClient.fromConnectionString(ownerConnectionString)
  await service.open()
  const receiver = await new Promise<any>((resolve, reject) => service.getFileNotificationReceiver((e, r) => (e ? reject(e) : resolve(r))))
  const got: Record<string, unknown>[] = []
  const waiters: (() => void)[] = []
  receiver.on('message', (m: AmqpMessage) => {
    got.push(JSON.parse(m.getData().toString()) as Record<string, unknown>)
    receiver.complete(m, () => {})
    for (const w of waiters.splice(0)) w()
  })
  return {
    async next(count) {
      const deadline = Date.now() + 20_000
      while (got.length < count) {
        if (Date.now() > deadline) throw new Error(`only ${got.length} of ${count} file notifications arrived`)
        await new Promise<void>((resolve) => { waiters.push(resolve); setTimeout(resolve, 500) })
      }
      return got.splice(0, count)
    },
    close: () => service.close().then(() => undefined),
  }
}

describe('file upload with azure-iot-device', () => {
  it('uploadToBlob stores 1 byte, 1 MB and 64 MB byte-exact; the printed connection string reads them; the service is notified of each', async () => {
    const notifications = await notificationReceiver()
    const { client } = await deviceClient('files-mqtt', Mqtt)
    const sizes = [1, 1024 * 1024, 64 * 1024 * 1024]
    const reader = BlobServiceClient.fromConnectionString(t.hub.blobStore.connectionString ?? '').getContainerClient('fileupload')
    for (const size of sizes) {
      const data = pattern(size)
      await client.uploadToBlob(`sizes/${size}.bin`, Readable.from([data]), data.length)
      const stored = await reader.getBlockBlobClient(`files-mqtt/sizes/${size}.bin`).downloadToBuffer()
      expect({ size: stored.length, sha: sha(stored) }).toEqual({ size, sha: sha(data) })
    }
    await client.close()
    const got = await notifications.next(3)
    expect(got.map((n) => ({ deviceId: n.deviceId, blobName: n.blobName, size: n.blobSizeInBytes }))).toEqual(sizes.map((size) => ({ deviceId: 'files-mqtt', blobName: `files-mqtt/sizes/${size}.bin`, size })))
    const port = new URL(t.hub.blobStore.connectionString!.match(/BlobEndpoint=([^;]+)/)![1]!).port
    expect(got[0]).toEqual({
      deviceId: 'files-mqtt', blobName: 'files-mqtt/sizes/1.bin', blobSizeInBytes: 1,
      blobUri: `https://127.0.0.1:${port}/hyperhub/fileupload/files-mqtt/sizes/1.bin`,
      lastUpdatedTime: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/), enqueuedTimeUtc: expect.stringMatching(/Z$/),
    })
    await notifications.close()
  }, 120_000)

  it('getBlobSharedAccessSignature + notifyBlobUploadStatus over Http: the SAS writes only its blob, for its lifetime; a failure report notifies nobody', async () => {
    const notifications = await notificationReceiver()
    const { client } = await deviceClient('files-http', Http)
    const up = await client.getBlobSharedAccessSignature('report.txt') as { correlationId: string; hostName: string; containerName: string; blobName: string; sasToken: string }
    expect({ blobName: up.blobName, containerName: up.containerName, sas: up.sasToken.startsWith('?'), sr: new URLSearchParams(up.sasToken).get('sr') }).toEqual({ blobName: 'files-http/report.txt', containerName: 'fileupload', sas: true, sr: 'b' })
    const url = (blob: string) => `https://${up.hostName}/${up.containerName}/${blob}${up.sasToken}`
    await new BlockBlobClient(url(up.blobName)).upload('all good', 8)
    // the same SAS for another blob (another device's) is refused by the store
    const other = await new BlockBlobClient(url('files-mqtt/stolen.txt')).upload('x', 1).catch((e: { statusCode?: number; code?: string }) => ({ statusCode: e.statusCode, code: e.code }))
    expect(other).toEqual({ statusCode: 403, code: 'AuthorizationFailure' })
    await client.notifyBlobUploadStatus(up.correlationId, true, 201, 'uploaded')
    const [n] = await notifications.next(1)
    expect({ blobName: n!.blobName, size: n!.blobSizeInBytes }).toEqual({ blobName: 'files-http/report.txt', size: 8 })
    // a failed upload is reported, frees its slot, and notifies nobody: the next notification is the marker's
    const failed = await client.getBlobSharedAccessSignature('failed.txt')
    await client.notifyBlobUploadStatus(failed.correlationId, false, 500, 'disk on fire')
    const marker = await client.getBlobSharedAccessSignature('marker.txt')
    await new BlockBlobClient(`https://${marker.hostName}/${marker.containerName}/${marker.blobName}${marker.sasToken}`).upload('m', 1)
    await client.notifyBlobUploadStatus(marker.correlationId, true, 201, '')
    expect((await notifications.next(1)).map((x) => x.blobName)).toEqual(['files-http/marker.txt'])
    // an expired SAS (signed by the same store, a minute in the past) writes nothing
    const target = await t.hub.blobStore.target()
    const expired = target.blobSas('fileupload', 'files-http/late.txt', new Date(Date.now() - 60_000))
    const late = await new BlockBlobClient(`https://${up.hostName}/fileupload/files-http/late.txt${expired}`).upload('x', 1).catch((e: { statusCode?: number; code?: string }) => ({ statusCode: e.statusCode, code: e.code }))
    expect(late).toEqual({ statusCode: 403, code: 'AuthorizationFailure' })
    await client.close()
    await notifications.close()
  }, 60_000)
})

describe('file upload refusals', () => {
  it('another device\'s path is 401; an 11th concurrent upload 403006; an unknown correlation id 400015; a bad report 400019; each leaves the rest intact', async () => {
    const { primaryKey } = await deviceClient('files-limit', Http)
    await t.createDevice('files-other')
    const token = t.deviceToken('files-limit', primaryKey)
    const start = (name: string, path = '/devices/files-limit/files') => t.rest('POST', `${path}?api-version=2021-04-12`, { token, body: { blobName: name } })
    const foreign = await start('x', '/devices/files-other/files')
    expect({ status: foreign.status, code: foreign.headers['iothub-errorcode'] }).toEqual({ status: 401, code: 'IotHubUnauthorized' })
    const started = []
    for (let i = 0; i < 10; i++) {
      const r = await start(`f${i}`)
      expect(r.status).toBe(200)
      started.push(r.body as { correlationId: string })
    }
    const eleventh = await start('f10')
    expect({ status: eleventh.status, message: eleventh.body.Message }).toEqual({ status: 403, message: 'ErrorCode:DeviceMaximumActiveFileUploadLimitExceeded;Number of active file upload requests cannot exceed 10' })
    const notify = (body: unknown, path = '/devices/files-limit/files/notifications') => t.rest('POST', `${path}?api-version=2021-04-12`, { token, body })
    const unknown = await notify({ correlationId: 'bm90LWEtcmVhbC1pZA', isSuccess: true, statusCode: 200 })
    expect({ status: unknown.status, code: unknown.headers['iothub-errorcode'] }).toEqual({ status: 400, code: 'InvalidFileUploadCorrelationId' })
    const badStatus = await notify({ correlationId: started[0]!.correlationId, isSuccess: 'yes' })
    expect({ status: badStatus.status, code: badStatus.headers['iothub-errorcode'] }).toEqual({ status: 400, code: 'InvalidFileUploadCompletionStatus' })
    // a report of success for a blob never written: 400020, and the upload is still open
    const missing = await notify({ isSuccess: true, statusCode: 201 }, `/devices/files-limit/files/notifications/${encodeURIComponent(started[0]!.correlationId)}`)
    expect({ status: missing.status, code: missing.headers['iothub-errorcode'] }).toEqual({ status: 400, code: 'InvalidStorageEndpointOrBlob' })
    // a failure report frees one slot, in either path form
    expect((await notify({ correlationId: started[0]!.correlationId, isSuccess: false, statusCode: 500, statusDescription: 'gave up' })).status).toBe(204)
    expect((await notify({ isSuccess: false, statusCode: 500 }, `/devices/files-limit/files/notifications/${encodeURIComponent(started[1]!.correlationId)}`)).status).toBe(204)
    // reported once: the same id again is unknown
    expect((await notify({ correlationId: started[0]!.correlationId, isSuccess: false })).headers['iothub-errorcode']).toBe('InvalidFileUploadCorrelationId')
    expect((await start('f10')).status).toBe(200)
    expect((await start('f11')).status).toBe(200)
    expect((await start('f12')).status).toBe(403)
    // another device cannot report this device's upload
    const other = t.hub.registry.get('files-other')!.authentication.symmetricKey.primaryKey!
    const stolen = await t.rest('POST', '/devices/files-other/files/notifications?api-version=2021-04-12', { token: t.deviceToken('files-other', other), body: { correlationId: started[2]!.correlationId, isSuccess: true } })
    expect({ status: stolen.status, code: stolen.headers['iothub-errorcode'] }).toEqual({ status: 400, code: 'InvalidFileUploadCorrelationId' })
    const badName = await start('a//b')
    expect({ status: badName.status, code: badName.headers['iothub-errorcode'] }).toEqual({ status: 400, code: 'ArgumentInvalid' })
  })
})
