// The official Azure IoT SDKs against the hub, unchanged, on the standard ports (8883, 443) with the
// hub's CA trusted through NODE_EXTRA_CA_CERTS — exactly how a user points them at Hyperhub. It binds
// the standard ports (see vitest.config.ts: *.sdk.test.ts files run one after another).
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Client as DeviceClient, Message } from 'azure-iot-device'
import { Mqtt, MqttWs } from 'azure-iot-device-mqtt'
import { Registry } from 'azure-iothub'
import { serviceConnectionString } from '../src/auth/policies.js'
import { startTestHub, type TestHub } from './helpers/test-hub.js'
import { eventsOf, readAllEvents, waitForEvents } from './helpers/events.js'

let t: TestHub
let registry: Registry
const logRecords: Record<string, unknown>[] = []

beforeAll(async () => {
  if (!process.env.NODE_EXTRA_CA_CERTS) throw new Error('run through `npm test`: the SDKs need NODE_EXTRA_CA_CERTS set at process start')
  t = await startTestHub({ mqttPort: 8883, httpsPort: 443, mqttTcpPort: null }, { logRecords })
  registry = Registry.fromConnectionString(serviceConnectionString('localhost', t.hub.policies.find((p) => p.keyName === 'iothubowner')!))
})
afterAll(async () => { await t?.stop() })

const deviceConnectionString = (id: string, key: string) => `HostName=localhost;DeviceId=${id};SharedAccessKey=${key}`

describe('azure-iothub Registry', () => {
  it('creates, gets, lists, updates with an etag, and deletes devices', async () => {
    const created = (await registry.create({ deviceId: 'sdk-reg-1' })).responseBody
    expect(created.deviceId).toBe('sdk-reg-1')
    expect(created.authentication?.symmetricKey?.primaryKey).toMatch(/^[A-Za-z0-9+/]{43}=$/)
    const got = (await registry.get('sdk-reg-1')).responseBody
    expect(got.etag).toBe(created.etag)
    const listed = (await registry.list()).responseBody
    expect(listed.map((d) => d.deviceId)).toContain('sdk-reg-1')
    const updated = (await registry.update({ ...got, status: 'disabled', statusReason: 'sdk test' })).responseBody
    expect(updated.status).toBe('disabled')
    expect(updated.etag).not.toBe(got.etag)
    await registry.delete('sdk-reg-1')
    await expect(registry.get('sdk-reg-1')).rejects.toMatchObject({ name: 'DeviceNotFoundError' })
  })

  it('surfaces Azure errors as the SDK\'s typed errors', async () => {
    await registry.create({ deviceId: 'sdk-reg-dup' })
    await expect(registry.create({ deviceId: 'sdk-reg-dup' })).rejects.toMatchObject({ name: 'DeviceAlreadyExistsError' })
    const bad = Registry.fromConnectionString(`HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=${Buffer.alloc(32).toString('base64')}`)
    await expect(bad.get('sdk-reg-dup')).rejects.toMatchObject({ name: 'UnauthorizedError' })
  })
})

describe.each([['Mqtt', Mqtt], ['MqttWs', MqttWs]] as const)('azure-iot-device over %s', (name, transport) => {
  it('sends messages with properties that a back end reads back in order', async () => {
    const deviceId = `sdk-${name.toLowerCase()}`
    const device = (await registry.create({ deviceId })).responseBody
    const client = DeviceClient.fromConnectionString(deviceConnectionString(deviceId, device.authentication!.symmetricKey!.primaryKey!), transport)
    await client.open()
    for (let i = 0; i < 20; i++) {
      const m = new Message(JSON.stringify({ n: i, via: name }))
      m.messageId = `msg-${i}`
      m.correlationId = `corr-${i}`
      m.contentType = 'application/json'
      m.contentEncoding = 'utf-8'
      m.properties.add('seq', String(i))
      m.properties.add('path/with&odd=chars', 'a b/c')
      await client.sendEvent(m)
    }
    await client.close()
    const events = eventsOf(await readAllEvents(t), deviceId)
    expect(events.map((e) => e.systemProperties['message-id'])).toEqual(Array.from({ length: 20 }, (_, i) => `msg-${i}`))
    events.forEach((e, i) => {
      expect(JSON.parse(Buffer.from(e.body, 'base64').toString())).toEqual({ n: i, via: name })
      expect(e.properties).toEqual({ seq: String(i), 'path/with&odd=chars': 'a b/c' })
      expect(e.systemProperties).toMatchObject({
        'correlation-id': `corr-${i}`, 'content-type': 'application/json', 'content-encoding': 'utf-8',
        'iothub-connection-device-id': deviceId, 'iothub-connection-auth-generation-id': device.generationId, 'iothub-message-source': 'Telemetry',
      })
    })
  })
})

describe('token renewal', () => {
  it('keeps the device working across reconnects, resuming its session without re-subscribing', async () => {
    const deviceId = 'sdk-renew'
    const device = (await registry.create({ deviceId })).responseBody
    const client = DeviceClient.fromConnectionString(deviceConnectionString(deviceId, device.authentication!.symmetricKey!.primaryKey!), Mqtt)
    await client.setOptions({ tokenRenewal: { tokenValidTimeInSeconds: 3, tokenRenewalMarginInSeconds: 1 } })
    await client.open()
    // a C2D listener makes the SDK subscribe once; after renewals it relies on the persistent session
    client.on('message', () => {})
    await new Promise((r) => setTimeout(r, 300))
    const sent: string[] = []
    const deadline = Date.now() + 7000
    for (let i = 0; Date.now() < deadline; i++) {
      const m = new Message(`tick ${i}`)
      m.messageId = `renew-${i}`
      await client.sendEvent(m)
      sent.push(m.messageId)
      await new Promise((r) => setTimeout(r, 250))
    }
    await client.close()
    const connects = logRecords.filter((r) => r.msg === 'device connected' && r.deviceId === deviceId)
    expect(connects.length).toBeGreaterThanOrEqual(3)
    expect(connects.slice(1).every((r) => r.sessionPresent === true)).toBe(true)
    const subscribes = logRecords.filter((r) => r.msg === 'subscribed' && r.deviceId === deviceId)
    expect(subscribes).toHaveLength(1)
    const events = await waitForEvents(t, deviceId, sent.length)
    expect(events.map((e) => e.systemProperties['message-id'])).toEqual(sent)
  }, 20_000)
})
