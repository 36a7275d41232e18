// Import and export jobs with azure-iothub's Registry on the standard ports: exportDevicesToBlob on
// one hub, then importDevicesFromBlob into a fresh hub (a second data directory) reproduces devices,
// keys, status and twins (tags and desired); getJob is polled until the job ends. The containers are
// in a blob store of their own (Azurite, the hub's child process in other tests), since the two hubs
// take port 443 one after the other. Bad input: an expired SAS (ArgumentError, 400008) and a second
// job while one runs (429004), then cancelJob.
import { join } from 'node:path'
import { rmSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Registry } from 'azure-iothub'
import { BlobServiceClient, ContainerSASPermissions, generateBlobSASQueryParameters, SASProtocol, StorageSharedKeyCredential, type ContainerClient } from '@azure/storage-blob'
import { AzuriteProcess } from '../src/storage/azurite-process.js'
import { parseStorageConnectionString } from '../src/storage/storage-connection-string.js'
import { ensureLocalPki } from '../src/tls/local-pki.js'
import { createLogger } from '../src/log.js'
import { seedPki, startTestHub, tempDir, type TestHub } from './helpers/test-hub.js'
import { until } from './helpers/device-mqtt.js'

const STANDARD = { mqttPort: 8883, httpsPort: 443, mqttTcpPort: null, amqpPort: 5671 }
const storeDir = tempDir('hyperhub-ie-store-')
let store: AzuriteProcess
let service: BlobServiceClient
let credential: StorageSharedKeyCredential

beforeAll(async () => {
  if (!process.env.NODE_EXTRA_CA_CERTS) throw new Error('run through `npm test`: the SDKs need NODE_EXTRA_CA_CERTS set at process start')
  seedPki(storeDir)
  const pki = ensureLocalPki(join(storeDir, 'tls'), ['localhost', '127.0.0.1'])
  store = new AzuriteProcess({ dataDir: storeDir, port: 0, certFile: pki.serverCertFile, keyFile: pki.serverKeyFile, log: createLogger('silent') })
  const endpoint = await store.start()
  const account = parseStorageConnectionString(endpoint.connectionString)
  credential = new StorageSharedKeyCredential(account.accountName, account.accountKey)
  service = BlobServiceClient.fromConnectionString(endpoint.connectionString)
}, 60_000)
afterAll(async () => {
  await store?.stop()
  rmSync(storeDir, { recursive: true, force: true })
})

async function container(name: string): Promise<ContainerClient> {
  const c = service.getContainerClient(name)
  await c.createIfNotExists()
  return c
}
function sas(c: ContainerClient, permissions = 'rwdl', expiresOn = new Date(Date.now() + 3600_000)): string {
  return `${c.url}?${generateBlobSASQueryParameters({ containerName: c.containerName, permissions: ContainerSASPermissions.parse(permissions), expiresOn, protocol: SASProtocol.Https }, credential).toString()}`
}
const registryOf = (t: TestHub) => Registry.fromConnectionString(`HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=${t.policyKey('iothubowner')}`)

/** getJob until the job ends (bounded). */
const ended = (registry: Registry, jobId: string): Promise<any> =>
  until(() => registry.getJob(jobId) as Promise<any>, (job: any) => ['completed', 'failed', 'cancelled'].includes(job.status), 30_000)
const values = (section: Record<string, unknown>) => Object.fromEntries(Object.entries(section).filter(([k]) => !k.startsWith('$')))

describe('Registry import and export jobs', () => {
  it('exportDevicesToBlob then importDevicesFromBlob into a fresh hub reproduces devices, keys, status and twins', async () => {
    const out = await container('sdk-roundtrip')
    const ids = ['sdk-ie-1', 'sdk-ie-2', 'sdk-ie-3']
    const before: Record<string, { device: any; twin: any }> = {}
    const a = await startTestHub(STANDARD)
    try {
      const registry = registryOf(a)
      await registry.create({ deviceId: ids[0]!, status: 'enabled' })
      await registry.create({ deviceId: ids[1]!, status: 'disabled' })
      await registry.create({ deviceId: ids[2]!, status: 'enabled', authentication: { symmetricKey: { primaryKey: Buffer.alloc(32, 1).toString('base64'), secondaryKey: Buffer.alloc(32, 2).toString('base64') } } })
      await registry.updateTwin(ids[0]!, { tags: { site: 'north' }, properties: { desired: { interval: 30 } } }, '*')
      await registry.updateTwin(ids[2]!, { tags: { site: 'south', rack: { row: 4 } } }, '*')
      const job: any = await registry.exportDevicesToBlob(sas(out), false)
      expect(job).toMatchObject({ type: 'export', status: 'enqueued' })
      expect(await ended(registry, job.jobId)).toMatchObject({ status: 'completed', progress: 100 })
      expect(((await registry.listJobs()).responseBody as any[]).map((j) => j.jobId)).toEqual([job.jobId])
      for (const id of ids) before[id] = { device: (await registry.get(id)).responseBody, twin: (await registry.getTwin(id)).responseBody }
    } finally {
      await a.stop()
    }

    const b = await startTestHub(STANDARD)
    try {
      const registry = registryOf(b)
      const job: any = await registry.importDevicesFromBlob(sas(out), sas(out))
      expect(job).toMatchObject({ type: 'import', status: 'enqueued' })
      expect(await ended(registry, job.jobId)).toMatchObject({ status: 'completed', progress: 100, statusMessage: 'imported 3 of 3 lines; 0 failed' })
      for (const id of ids) {
        const device = (await registry.get(id)).responseBody
        const twin: any = (await registry.getTwin(id)).responseBody
        const was = before[id]!
        expect({ id, status: device.status, keys: device.authentication?.symmetricKey }).toEqual({ id, status: was.device.status, keys: was.device.authentication.symmetricKey })
        expect({ id, tags: twin.tags ?? {}, desired: values(twin.properties.desired) }).toEqual({ id, tags: was.twin.tags ?? {}, desired: values(was.twin.properties.desired) })
      }
    } finally {
      await b.stop()
    }
  }, 120_000)

  it('refuses an expired SAS (ArgumentError, 400008) and a second job while one runs (429004); cancelJob ends the first', async () => {
    const c = await container('sdk-refusals')
    const file = Array.from({ length: 20_000 }, (_, i) => JSON.stringify({ id: `sdk-long-${i}` })).join('\n')
    await c.getBlockBlobClient('devices.txt').upload(file, Buffer.byteLength(file))
    const t = await startTestHub(STANDARD)
    try {
      const registry = registryOf(t)
      const expired = await registry.exportDevicesToBlob(sas(c, 'rwdl', new Date(Date.now() - 60_000)), true).then(() => undefined, (e: any) => e)
      expect({ name: expired?.constructor?.name, status: expired?.response?.statusCode, code: expired?.response?.headers?.['iothub-errorcode'] })
        .toEqual({ name: 'ArgumentError', status: 400, code: 'BlobContainerValidationError' })
      const first: any = await registry.importDevicesFromBlob(sas(c), sas(c))
      const second = await registry.exportDevicesToBlob(sas(c), true).then(() => undefined, (e: any) => e)
      expect({ status: second?.response?.statusCode, code: second?.response?.headers?.['iothub-errorcode'] }).toEqual({ status: 429, code: 'ThrottlingMaxActiveJobCountExceeded' })
      const cancelled: any = await registry.cancelJob(first.jobId)
      expect(cancelled).toMatchObject({ jobId: first.jobId, status: 'cancelled' })
    } finally {
      await t.stop()
    }
  }, 60_000)
})
