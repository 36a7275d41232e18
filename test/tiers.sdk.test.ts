// Issue 14 with the official SDKs on the standard ports: azure-iothub's Registry reads a throttled
// answer as its ThrottlingError, and an azure-iot-device Mqtt client is disconnected on D2C overflow
// (Azure closes the connection; the SDK then leaves that sendEvent pending, which this reproduces).
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Client as DeviceClient, Message } from 'azure-iot-device'
import { Mqtt } from 'azure-iot-device-mqtt'
import { Registry } from 'azure-iothub'
import { serviceConnectionString } from '../src/auth/policies.js'
import { ManualClock } from '../src/throttle/clock.js'
import { startTestHub, type TestHub } from './helpers/test-hub.js'
import { until } from './helpers/device-mqtt.js'

const clock = new ManualClock()
let t: TestHub
let registry: Registry
const logRecords: Record<string, unknown>[] = []
beforeAll(async () => {
  if (!process.env.NODE_EXTRA_CA_CERTS) throw new Error('run through `npm test`: the SDKs need NODE_EXTRA_CA_CERTS set at process start')
  t = await startTestHub({ mqttPort: 8883, httpsPort: 443, mqttTcpPort: null, amqpPort: null }, { throttleClock: { clock, shaping: { burstSeconds: 1, backlogSeconds: 1 }, delay: async () => {} }, logRecords })
  registry = Registry.fromConnectionString(serviceConnectionString('localhost', t.hub.policies.find((p) => p.keyName === 'iothubowner')!))
})
afterAll(async () => { await t?.stop() })

describe('tiers with the official SDKs', () => {
  it('Registry gets ThrottlingError once the registry throttle\'s backlog is full', async () => {
    await registry.create({ deviceId: 'sdk-tier-reg' })
    expect((await t.rest('PUT', '/hyperhub/tier', { body: { tier: 'S1', units: 1, overrides: { registry: 1 } } })).status).toBe(200)
    // burst 1, backlog 1: the third call in the same instant overflows
    await registry.get('sdk-tier-reg')
    await registry.get('sdk-tier-reg')
    await expect(registry.get('sdk-tier-reg')).rejects.toMatchObject({ name: 'ThrottlingError' })
    clock.advance(60_000)
    expect((await registry.get('sdk-tier-reg')).responseBody.deviceId).toBe('sdk-tier-reg')
  })

  it('an Mqtt device is disconnected on D2C overflow; its sendEvent waits while the SDK retries into the full throttle', async () => {
    const device = (await registry.create({ deviceId: 'sdk-tier-d2c' })).responseBody
    expect((await t.rest('PUT', '/hyperhub/tier', { body: { tier: 'S1', units: 1, overrides: { d2c: 2 } } })).status).toBe(200)
    clock.advance(60_000)
    const client = DeviceClient.fromConnectionString(`HostName=localhost;DeviceId=sdk-tier-d2c;SharedAccessKey=${device.authentication!.symmetricKey!.primaryKey}`, Mqtt)
    await client.open()
    for (let i = 0; i < 4; i++) await client.sendEvent(new Message(`m${i}`)) // burst 2, backlog 2
    let settled = false
    void client.sendEvent(new Message('over')).then(() => { settled = true }, () => { settled = true })
    await until(() => logRecords.some((r) => r.msg === 'connection closed' && r.deviceId === 'sdk-tier-d2c' && r.reason === 'throttled'), (ok) => ok)
    const closed = logRecords.find((r) => r.msg === 'connection closed' && r.reason === 'throttled')!
    expect(closed.errorCode).toBe(429001)
    // the hub closed the connection on that message: the SDK reconnects and sends it again, into the
    // same full throttle, and the application's sendEvent neither resolves nor fails
    await until(() => logRecords.filter((r) => r.msg === 'connection closed' && r.deviceId === 'sdk-tier-d2c' && r.reason === 'throttled').length, (n) => n >= 2, 15_000)
    expect(settled).toBe(false)
    // a real app would wait here for good; this one frees the throttle, and the retried send lands
    clock.advance(60_000)
    await until(() => settled, (s) => s, 15_000)
    await client.close()
    expect((await t.rest('PUT', '/hyperhub/tier', { body: { tier: 'unlimited' } })).status).toBe(200)
  }, 20_000)
})
