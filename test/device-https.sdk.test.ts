// Issue 15 (device HTTPS telemetry) with the official SDK on the standard port: azure-iot-device over
// azure-iot-device-http sends single messages and batches that a back end reads back in order with
// their properties; answered only after the commit. And bad input on the same route: another
// device's path, a batch that is not JSON, a message over 256 KB.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Client as DeviceClient, Message } from 'azure-iot-device'
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
