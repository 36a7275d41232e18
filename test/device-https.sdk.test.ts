// Issue 15 (device HTTPS telemetry) with the official SDK on the standard port: azure-iot-device over
// azure-iot-device-http sends single messages and batches that a back end reads back in order with
// their properties; answered only after the commit. And bad input on the same route: another
// device's path, a batch that is not JSON, a message over 256 KB. C2D over HTTPS: the SDK's poll,
// complete, reject and abandon against the queue MQTT delivers from, with feedback; lock tokens that
// settle once, and a device that polls another's queue.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Client as DeviceClient, Message } from 'azure-iot-device'
import type { Message as ReceivedMessage } from 'azure-iot-common'
import { Http } from 'azure-iot-device-http'
import { startTestHub, type TestHub } from './helpers/test-hub.js'
import { eventsOf, readAllEvents } from './helpers/events.js'

let t: TestHub
beforeAll(async () => {
  if (!process.env.NODE_EXTRA_CA_CERTS) throw new Error('run through `npm test`: the SDKs need NODE_EXTRA_CA_CERTS set at process start')
  t = await startTestHub({ httpsPort: 443, mqttPort: 0, amqpPort: null })
})
afterAll(async () => { await t?.stop() })

describe('azure-iot-device over Http', () => {
  it('sendEvent and sendEventBatch arrive in the built-in endpoint in order, with their properties, committed when answered', async () => {
    const { primaryKey } = await t.createDevice('sdk-http')
    const client = DeviceClient.fromConnectionString(`HostName=localhost;DeviceId=sdk-http;SharedAccessKey=${primaryKey}`, Http)
    await client.open()
    for (let i = 0; i < 5; i++) {
      const m = new Message(JSON.stringify({ n: i }))
      m.messageId = `one-${i}`
      m.correlationId = `corr-${i}`
      m.contentType = 'application/json'
      m.contentEncoding = 'utf-8'
      m.properties.add('seq', String(i))
      await client.sendEvent(m)
      // answered means committed: readable at once
      expect(eventsOf(await readAllEvents(t), 'sdk-http')).toHaveLength(i + 1)
    }
    const batch = Array.from({ length: 3 }, (_, i) => {
      const m = new Message(`batch ${i}`)
      m.properties.add('kind', 'batched')
      return m
    })
    await client.sendEventBatch(batch)
    await client.close()
    const events = eventsOf(await readAllEvents(t), 'sdk-http')
    expect(events.slice(0, 5).map((e) => e.systemProperties['message-id'])).toEqual(['one-0', 'one-1', 'one-2', 'one-3', 'one-4'])
    expect(events[2]).toMatchObject({
      properties: { seq: '2' },
      systemProperties: { 'correlation-id': 'corr-2', 'content-type': 'application/json', 'content-encoding': 'utf-8', 'iothub-connection-device-id': 'sdk-http', 'iothub-message-source': 'Telemetry' },
    })
    expect(events.slice(5).map((e) => [Buffer.from(e.body, 'base64').toString(), e.properties])).toEqual([0, 1, 2].map((i) => [`batch ${i}`, { kind: 'batched' }]))
    // HTTPS posts take nothing over and connect nobody
    expect(t.hub.edge.connectionState('sdk-http').connected).toBe(false)
  })

  it('refuses another device\'s path, a batch that is not JSON and a message over 256 KB, storing none of them', async () => {
    const a = await t.createDevice('http-a')
    await t.createDevice('http-b')
    const token = t.deviceToken('http-a', a.primaryKey)
    const other = await t.rest('POST', '/devices/http-b/messages/events', { raw: 'x', token })
    expect({ status: other.status, code: other.headers['iothub-errorcode'] }).toEqual({ status: 401, code: 'IotHubUnauthorized' })
    const badBatch = await t.rest('POST', '/devices/http-a/messages/events', { raw: '[{"body": ', token, headers: { 'Content-Type': 'application/vnd.microsoft.iothub.json' } })
    expect({ status: badBatch.status, message: badBatch.body.Message }).toEqual({ status: 400, message: 'ErrorCode:DeserializationError;the request body is not valid JSON' })
    const tooBig = await t.rest('POST', '/devices/http-a/messages/events', { raw: Buffer.alloc(256 * 1024 + 1), token })
    expect({ status: tooBig.status, code: tooBig.headers['iothub-errorcode'] }).toEqual({ status: 413, code: 'MessageTooLarge' })
    const marker = await t.rest('POST', '/devices/http-a/messages/events', { raw: 'marker', token, headers: { 'iothub-messageid': 'marker' } })
    expect(marker.status).toBe(204)
    const events = await readAllEvents(t)
    expect(eventsOf(events, 'http-a').map((e) => e.systemProperties['message-id'])).toEqual(['marker'])
    expect(eventsOf(events, 'http-b')).toEqual([])
  })

})

/** Reads the feedback queue until it is empty, completing each record. */
async function drainFeedback(): Promise<Record<string, string>[]> {
  const out: Record<string, string>[] = []
  for (let i = 0; i < 100; i++) {
    const r = await t.rest('GET', '/messages/serviceBound/feedback?api-version=2021-04-12')
    if (r.status === 204) return out
    out.push(...(r.body as Record<string, string>[]))
    expect((await t.rest('DELETE', `/messages/serviceBound/feedback/${String(r.headers.etag).replace(/"/g, '')}?api-version=2021-04-12`)).status).toBe(204)
  }
  throw new Error('the feedback queue did not empty')
}

const sendC2d = async (deviceId: string, messageId: string, body: string, headers: Record<string, string> = {}) => {
  const r = await t.rest('POST', `/devices/${deviceId}/messages/devicebound?api-version=2021-04-12`, { raw: body, headers: { 'iothub-messageid': messageId, 'iothub-ack': 'full', ...headers } })
  expect(r.status).toBe(200)
}

describe('C2D over HTTPS', () => {
  it('the SDK receives in order; complete, abandon (redelivered, counted) and reject (dead-lettered) as Azure, with feedback', async () => {
    const { primaryKey } = await t.createDevice('sdk-http-c2d')
    await sendC2d('sdk-http-c2d', 'c-1', 'first', { 'iothub-app-color': 'red', 'iothub-correlationid': 'corr-1' })
    await sendC2d('sdk-http-c2d', 'c-2', 'second')
    await sendC2d('sdk-http-c2d', 'c-3', 'third')
    const client = DeviceClient.fromConnectionString(`HostName=localhost;DeviceId=sdk-http-c2d;SharedAccessKey=${primaryKey}`, Http)
    await client.setOptions({ http: { receivePolicy: { interval: 1, drain: true } } })
    const seen: { id: string; body: string; color?: string; corr?: string }[] = []
    const done = new Promise<void>((resolve, reject) => {
      const settledIds = new Set<string>()
      client.on('error', reject)
      client.on('message', (m: ReceivedMessage) => {
        const id = String(m.messageId)
        seen.push({ id, body: m.getData().toString(), color: m.properties.getValue('iothub-app-color') as string | undefined, corr: (m.correlationId as string) || undefined })
        const settled = (e?: Error) => {
          if (e) return reject(e)
          settledIds.add(id)
          if (settledIds.size === 3) resolve()
        }
        if (id === 'c-2' && seen.filter((x) => x.id === 'c-2').length === 1) client.abandon(m, (e?: Error) => { if (e) reject(e) })
        else if (id === 'c-3') client.reject(m, settled)
        else client.complete(m, settled)
      })
    })
    await client.open()
    await done
    await client.close()
    // the SDK polls again while its abandon is on the way, so c-3 may come before c-2's second delivery
    expect(seen[0]).toEqual({ id: 'c-1', body: 'first', color: 'red', corr: 'corr-1' })
    expect(seen.slice(1).map((x) => `${x.id} ${x.body}`).sort()).toEqual(['c-2 second', 'c-2 second', 'c-3 third'])
    const feedback = (await drainFeedback()).filter((f) => f.deviceId === 'sdk-http-c2d')
    expect(feedback.map((f) => [f.originalMessageId, f.statusCode]).sort()).toEqual([['c-1', 'Success'], ['c-2', 'Success'], ['c-3', 'Rejected']])
    const token = t.deviceToken('sdk-http-c2d', primaryKey)
    expect((await t.rest('GET', '/devices/sdk-http-c2d/messages/devicebound?api-version=2021-04-12', { token })).status).toBe(204)
  }, 30_000)

  it('a poll answers the message with its lock as a quoted ETag and iothub-* headers; a lock settles once (412002 after)', async () => {
    const { primaryKey } = await t.createDevice('http-c2d-raw')
    const token = t.deviceToken('http-c2d-raw', primaryKey)
    await sendC2d('http-c2d-raw', 'r-1', 'payload', { 'iothub-app-k': 'v', 'iothub-userid': 'svc' })
    const got = await t.rest('GET', '/devices/http-c2d-raw/messages/devicebound?api-version=2021-04-12', { token })
    const lock = String(got.headers.etag).replace(/^"(.*)"$/, '$1')
    expect({ status: got.status, text: got.text, etagQuoted: /^"[0-9a-f-]{36}"$/.test(String(got.headers.etag)) }).toEqual({ status: 200, text: 'payload', etagQuoted: true })
    expect(got.headers).toMatchObject({
      'iothub-messageid': 'r-1', 'iothub-userid': 'svc', 'iothub-app-k': 'v', 'iothub-ack': 'full', 'iothub-deliverycount': '1',
      'iothub-sequencenumber': expect.stringMatching(/^\d+$/), 'iothub-to': '/devices/http-c2d-raw/messages/devicebound',
      'iothub-enqueuedtime': expect.stringMatching(/^\d{4}-\d\d-\d\dT.*Z$/),
    })
    // locked: the next poll finds nothing
    expect((await t.rest('GET', '/devices/http-c2d-raw/messages/devicebound', { token })).status).toBe(204)
    const complete = () => t.rest('DELETE', `/devices/http-c2d-raw/messages/devicebound/${lock}?api-version=2021-04-12`, { token, headers: { 'If-Match': `"${lock}"` } })
    // If-Match naming another lock settles nothing
    const mismatch = await t.rest('DELETE', `/devices/http-c2d-raw/messages/devicebound/${lock}`, { token, headers: { 'If-Match': '"0f8fad5b-d9cb-469f-a165-70867728950e"' } })
    expect({ status: mismatch.status, message: mismatch.body.Message }).toEqual({ status: 412, message: 'ErrorCode:DeviceMessageLockLost;If-Match names another lock token than the path' })
    expect((await complete()).status).toBe(204)
    const twice = await complete()
    expect({ status: twice.status, code: twice.headers['iothub-errorcode'] }).toEqual({ status: 412, code: 'DeviceMessageLockLost' })
    const unknown = await t.rest('POST', '/devices/http-c2d-raw/messages/devicebound/0f8fad5b-d9cb-469f-a165-70867728950e/abandon', { token })
    expect({ status: unknown.status, code: unknown.headers['iothub-errorcode'] }).toEqual({ status: 412, code: 'DeviceMessageLockLost' })
    const notAGuid = await t.rest('DELETE', '/devices/http-c2d-raw/messages/devicebound/not-a-lock?reject', { token })
    expect({ status: notAGuid.status, code: notAGuid.headers['iothub-errorcode'] }).toEqual({ status: 412, code: 'DeviceMessageLockLost' })
    // abandon: back in the queue, its delivery count up; reject: dead-lettered
    await sendC2d('http-c2d-raw', 'r-2', 'again')
    const r2 = await t.rest('GET', '/devices/http-c2d-raw/messages/devicebound', { token })
    expect((await t.rest('POST', `/devices/http-c2d-raw/messages/devicebound/${String(r2.headers.etag).replace(/"/g, '')}/abandon`, { token })).status).toBe(204)
    const r2again = await t.rest('GET', '/devices/http-c2d-raw/messages/devicebound', { token })
    expect({ mid: r2again.headers['iothub-messageid'], count: r2again.headers['iothub-deliverycount'], newLock: r2again.headers.etag !== r2.headers.etag }).toEqual({ mid: 'r-2', count: '2', newLock: true })
    expect((await t.rest('DELETE', `/devices/http-c2d-raw/messages/devicebound/${String(r2again.headers.etag).replace(/"/g, '')}?reject`, { token })).status).toBe(204)
    expect((await t.rest('GET', '/devices/http-c2d-raw/messages/devicebound', { token })).status).toBe(204)
    expect((await drainFeedback()).filter((f) => f.deviceId === 'http-c2d-raw').map((f) => [f.originalMessageId, f.statusCode])).toEqual([['r-1', 'Success'], ['r-2', 'Rejected']])
  })

  it('a device cannot poll or settle another device\'s queue', async () => {
    const a = await t.createDevice('http-c2d-a')
    await t.createDevice('http-c2d-b')
    await sendC2d('http-c2d-b', 'b-1', 'for b')
    const tokenA = t.deviceToken('http-c2d-a', a.primaryKey)
    const poll = await t.rest('GET', '/devices/http-c2d-b/messages/devicebound', { token: tokenA })
    expect({ status: poll.status, code: poll.headers['iothub-errorcode'] }).toEqual({ status: 401, code: 'IotHubUnauthorized' })
    const settle = await t.rest('DELETE', '/devices/http-c2d-b/messages/devicebound/0f8fad5b-d9cb-469f-a165-70867728950e', { token: tokenA })
    expect(settle.status).toBe(401)
    // b's message is still there for b
    const b = t.hub.registry.get('http-c2d-b')!.authentication.symmetricKey.primaryKey!
    const own = await t.rest('GET', '/devices/http-c2d-b/messages/devicebound', { token: t.deviceToken('http-c2d-b', b) })
    expect({ status: own.status, mid: own.headers['iothub-messageid'] }).toEqual({ status: 200, mid: 'b-1' })
  })

  it('a message whose properties would not fit in HTTP headers is rejected (Rejected feedback) and the poll answers the next one', async () => {
    const { primaryKey } = await t.createDevice('http-c2d-big')
    const token = t.deviceToken('http-c2d-big', primaryKey)
    const props = Object.fromEntries(Array.from({ length: 4 }, (_, i) => [`iothub-app-p${i}`, 'v'.repeat(3500)]))
    await sendC2d('http-c2d-big', 'big-1', 'too many headers', props)
    await sendC2d('http-c2d-big', 'small-2', 'fits')
    const got = await t.rest('GET', '/devices/http-c2d-big/messages/devicebound', { token })
    expect({ status: got.status, mid: got.headers['iothub-messageid'], text: got.text }).toEqual({ status: 200, mid: 'small-2', text: 'fits' })
    expect((await drainFeedback()).filter((f) => f.deviceId === 'http-c2d-big').map((f) => [f.originalMessageId, f.statusCode])).toEqual([['big-1', 'Rejected']])
  })
})
