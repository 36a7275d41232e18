// Twins, direct methods and C2D with the official SDKs, unchanged, on the standard ports:
// azure-iot-device + azure-iot-device-mqtt on the device, azure-iothub (Registry, Client) on the back
// end, and Hyperhub's REST send for C2D (Azure's service side sends C2D over AMQP only).
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Client as DeviceClient, type Message, type Twin } from 'azure-iot-device'
import { Mqtt, MqttWs } from 'azure-iot-device-mqtt'
import { Client as ServiceClient, Registry } from 'azure-iothub'
import { serviceConnectionString } from '../src/auth/policies.js'
import { startTestHub, type TestHub } from './helpers/test-hub.js'
import { sleep, until } from './helpers/device-mqtt.js'

let t: TestHub
let registry: Registry
let service: ServiceClient
const logRecords: Record<string, unknown>[] = []

beforeAll(async () => {
  if (!process.env.NODE_EXTRA_CA_CERTS) throw new Error('run through `npm test`: the SDKs need NODE_EXTRA_CA_CERTS set at process start')
  t = await startTestHub({ mqttPort: 8883, httpsPort: 443, mqttTcpPort: null, shards: 2 }, { logRecords })
  const cs = serviceConnectionString('localhost', t.hub.policies.find((p) => p.keyName === 'iothubowner')!)
  registry = Registry.fromConnectionString(cs)
  service = ServiceClient.fromConnectionString(cs)
})
afterAll(async () => { await t?.stop() })

async function deviceClient(deviceId: string, transport: typeof Mqtt | typeof MqttWs = Mqtt): Promise<DeviceClient> {
  const device = (await registry.create({ deviceId })).responseBody
  return DeviceClient.fromConnectionString(`HostName=localhost;DeviceId=${deviceId};SharedAccessKey=${device.authentication!.symmetricKey!.primaryKey}`, transport)
}

/** Resolves with the next desired-properties delta that has `key`. */
function nextDesired(twin: Twin, key: string): Promise<Record<string, unknown>> {
  return new Promise((resolve) => {
    const on = (delta: Record<string, unknown>) => { if (key in delta) { twin.removeListener('properties.desired', on); resolve(delta) } }
    twin.on('properties.desired', on)
  })
}

const connects = (deviceId: string) => logRecords.filter((r) => r.msg === 'device connected' && r.deviceId === deviceId).length

describe.each([['Mqtt', Mqtt], ['MqttWs', MqttWs]] as const)('twins over %s', (name, transport) => {
  it('gets the twin, reports properties and receives desired patches; Registry round-trips with etags', async () => {
    const deviceId = `sdk-twin-${name.toLowerCase()}`
    const client = await deviceClient(deviceId, transport)
    await client.open()
    const twin = await client.getTwin()
    expect(twin.properties.desired.$version).toBe(1)
    await new Promise<void>((resolve, reject) => twin.properties.reported.update({ temp: 21.5, fw: { version: '1.2' } }, (e?: Error) => (e ? reject(e) : resolve())))
    const got = (await registry.getTwin(deviceId)).responseBody
    expect(got.properties.reported).toMatchObject({ temp: 21.5, fw: { version: '1.2' }, $version: 2 })

    const delta = nextDesired(twin, 'rate')
    const updated = (await registry.updateTwin(deviceId, { tags: { site: 'lab' }, properties: { desired: { rate: 7 } } }, got.etag)).responseBody
    expect(updated.etag).not.toBe(got.etag)
    expect(updated.tags).toEqual({ site: 'lab' })
    expect(await delta).toMatchObject({ rate: 7, $version: 2 })
    expect(twin.properties.desired.rate).toBe(7)
    // a stale etag is refused
    await expect(registry.updateTwin(deviceId, { tags: { site: 'other' } }, got.etag)).rejects.toMatchObject({ name: 'InvalidEtagError' })
    // and a reported-property error reaches the app as an error
    await expect(new Promise<void>((resolve, reject) => twin.properties.reported.update({ big: 'x'.repeat(4097) }, (e?: Error) => (e ? reject(e) : resolve())))).rejects.toThrow('reported.big: strings must be at most 4096 bytes')
    await client.close()
  })
})

describe('desired patches keep arriving', () => {
  it('after a forced reconnect (the SDK does not re-subscribe twin topics)', async () => {
    const deviceId = 'sdk-twin-drop'
    const client = await deviceClient(deviceId)
    // the SDK reconnects by itself only when something listens for C2D or methods
    client.on('message', () => {})
    await client.open()
    const twin = await client.getTwin()
    const before = connects(deviceId)
    // drop the connection from the hub's side
    ;(t.hub.edge as unknown as { byClientId: Map<string, { close(r: string): void }> }).byClientId.get(deviceId)!.close('dropped by the test')
    await until(() => connects(deviceId), (n) => n > before, 15_000)
    await sleep(300)
    const delta = nextDesired(twin, 'afterDrop')
    await registry.updateTwin(deviceId, { properties: { desired: { afterDrop: true } } }, '*')
    expect(await delta).toMatchObject({ afterDrop: true })
    await client.close()
  }, 30_000)

  it('after token renewals', async () => {
    const deviceId = 'sdk-twin-renew'
    const client = await deviceClient(deviceId)
    await client.setOptions({ tokenRenewal: { tokenValidTimeInSeconds: 3, tokenRenewalMarginInSeconds: 1 } })
    await client.open()
    const twin = await client.getTwin()
    await until(() => connects(deviceId), (n) => n >= 3, 10_000)
    expect(connects(deviceId)).toBeGreaterThanOrEqual(3)
    await sleep(200)
    const delta = nextDesired(twin, 'afterRenewal')
    await registry.updateTwin(deviceId, { properties: { desired: { afterRenewal: 1 } } }, '*')
    expect(await delta).toMatchObject({ afterRenewal: 1 })
    const subscribes = logRecords.filter((r) => r.msg === 'subscribed' && r.deviceId === deviceId)
    expect(subscribes.flatMap((r) => r.filters as string[]).filter((f) => f.startsWith('$iothub/twin/'))).toHaveLength(2)
    await client.close()
  }, 30_000)
})

describe('direct methods', () => {
  it('invokeDeviceMethod gets the device\'s answer; 404 when offline, 504 when it does not answer', async () => {
    const deviceId = 'sdk-method'
    const client = await deviceClient(deviceId)
    await expect(service.invokeDeviceMethod(deviceId, { methodName: 'reboot', payload: null })).rejects.toMatchObject({ responseBody: expect.stringContaining('DeviceNotOnline') })
    await client.open()
    client.onDeviceMethod('reboot', (req, res) => { void res.send(200, { rebooting: true, input: req.payload }) })
    client.onDeviceMethod('silent', () => {})
    await sleep(300)
    const r = await service.invokeDeviceMethod(deviceId, { methodName: 'reboot', payload: { delay: 3 }, responseTimeoutInSeconds: 10 })
    expect(r.result).toEqual({ status: 200, payload: { rebooting: true, input: { delay: 3 } } })
    const many = await Promise.all(Array.from({ length: 10 }, (_, i) => service.invokeDeviceMethod(deviceId, { methodName: 'reboot', payload: i })))
    many.forEach((m, i) => expect(m.result.payload.input).toBe(i))
    await expect(service.invokeDeviceMethod(deviceId, { methodName: 'silent', payload: null, responseTimeoutInSeconds: 5 })).rejects.toMatchObject({ name: 'GatewayTimeoutError' })
    await client.close()
  }, 20_000)
})

describe('C2D', () => {
  it('messages sent while the device is offline arrive after it connects, in order, once', async () => {
    const deviceId = 'sdk-c2d'
    const client = await deviceClient(deviceId)
    for (let i = 0; i < 5; i++) {
      const r = await t.rest('POST', `/devices/${deviceId}/messages/deviceBound`, {
        raw: JSON.stringify({ n: i }), headers: { 'iothub-messageid': `c2d-${i}`, 'iothub-ack': 'positive', 'iothub-app-kind': 'a/b', 'iothub-contenttype': 'application/json' },
      })
      expect(r.status).toBe(200)
    }
    const received: Message[] = []
    client.on('message', (m: Message) => { received.push(m); void client.complete(m) })
    await client.open()
    await until(() => received.length, (n) => n >= 5, 10_000)
    // a marker sent after them: everything before it has come, once (C2D is delivered in order)
    expect((await t.rest('POST', `/devices/${deviceId}/messages/deviceBound`, { raw: 'marker', headers: { 'iothub-messageid': 'c2d-marker' } })).status).toBe(200)
    await until(() => received.length, (n) => n >= 6, 10_000)
    expect(received.map((m) => m.messageId)).toEqual(['c2d-0', 'c2d-1', 'c2d-2', 'c2d-3', 'c2d-4', 'c2d-marker'])
    received.pop()
    expect(received.map((m) => JSON.parse(m.data.toString()).n)).toEqual([0, 1, 2, 3, 4])
    expect(received[0]!.properties.getValue('kind')).toBe('a/b')
    expect(received[0]!.contentType).toBe('application/json')
    expect(await until(async () => Number((await registry.get(deviceId)).responseBody.cloudToDeviceMessageCount), (n) => n === 0)).toBe(0)
    await client.close()
    const fb = await until(() => t.rest('GET', '/messages/serviceBound/feedback'), (r) => r.status === 200)
    expect(fb.body.filter((f: { deviceId: string }) => f.deviceId === deviceId).map((f: { statusCode: string }) => f.statusCode)).toEqual(['Success', 'Success', 'Success', 'Success', 'Success'])
  }, 20_000)
})
