// Issue 12: behaviour the official SDKs see that differed from Azure IoT Hub. A twin PATCH of
// `desired: null` reaches the device as a patch; a twin fetched with getTwin can be written back as it
// is (with its read-only $metadata and $version); a Plug and Play device's model id shows in its twin,
// its identity, query results and on its telemetry.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Client as DeviceClient, Message, type Twin } from 'azure-iot-device'
import { Mqtt } from 'azure-iot-device-mqtt'
import { Registry } from 'azure-iothub'
import { serviceConnectionString } from '../src/auth/policies.js'
import { startTestHub, type TestHub } from './helpers/test-hub.js'
import { eventsOf, waitForEvents } from './helpers/events.js'

let t: TestHub
let registry: Registry
beforeAll(async () => {
  if (!process.env.NODE_EXTRA_CA_CERTS) throw new Error('run through `npm test`: the SDKs need NODE_EXTRA_CA_CERTS set at process start')
  t = await startTestHub({ mqttPort: 8883, httpsPort: 443, mqttTcpPort: null })
  registry = Registry.fromConnectionString(serviceConnectionString('localhost', t.hub.policies.find((p) => p.keyName === 'iothubowner')!))
})
afterAll(async () => { await t?.stop() })

async function deviceClient(deviceId: string, modelId?: string): Promise<DeviceClient> {
  const device = (await registry.create({ deviceId })).responseBody
  const client = DeviceClient.fromConnectionString(`HostName=localhost;DeviceId=${deviceId};SharedAccessKey=${device.authentication!.symmetricKey!.primaryKey}`, Mqtt)
  if (modelId) await client.setOptions({ modelId })
  return client
}

function nextDesired(twin: Twin, ok: (delta: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
  return new Promise((resolve) => {
    const on = (delta: Record<string, unknown>) => { if (ok(delta)) { twin.removeListener('properties.desired', on); resolve(delta) } }
    twin.on('properties.desired', on)
  })
}

describe('twins', () => {
  it('a PATCH of {"desired": null} removes every desired property, bumps the version and reaches the device as a patch', async () => {
    const client = await deviceClient('parity-null')
    await client.open()
    const twin = await client.getTwin()
    const set = nextDesired(twin, (d) => 'a' in d)
    await registry.updateTwin('parity-null', { tags: { site: 'x' }, properties: { desired: { a: 1, b: { c: 2 } } } }, '*')
    await set
    const before = (await registry.getTwin('parity-null')).responseBody as unknown as { version: number; properties: { desired: { $version: number } } }
    const cleared = nextDesired(twin, (d) => d.a === null)
    const after = (await registry.updateTwin('parity-null', { tags: null, properties: { desired: null } }, '*')).responseBody as unknown as { version: number; tags?: object; properties: { desired: Record<string, unknown> } }
    expect(await cleared).toMatchObject({ a: null, b: null, $version: before.properties.desired.$version + 1 })
    expect(after.version).toBe(before.version + 1)
    const { $metadata, $version, ...values } = after.properties.desired
    expect(values).toEqual({})
    expect($version).toBe(before.properties.desired.$version + 1)
    expect(after.tags ?? {}).toEqual({})
    await client.close()
  })

  it('writes back a twin fetched with getTwin, $metadata and $version included', async () => {
    await registry.create({ deviceId: 'parity-writeback' })
    await registry.updateTwin('parity-writeback', { properties: { desired: { mode: 'eco', limits: { max: 3 } } } }, '*')
    const fetched = (await registry.getTwin('parity-writeback')).responseBody
    expect(fetched.properties.desired.$metadata).toBeDefined()
    fetched.properties.desired.mode = 'boost'
    // what the C# and Python SDKs' replaceTwin send: the fetched twin, as it came (the Node SDK has no replace)
    const replaced = await t.rest('PUT', '/twins/parity-writeback?api-version=2021-04-12', { body: fetched, headers: { 'If-Match': '"*"' } })
    expect(replaced.status).toBe(200)
    expect(replaced.body.properties.desired).toMatchObject({ mode: 'boost', limits: { max: 3 } })
    const patched = (await registry.updateTwin('parity-writeback', { properties: { desired: fetched.properties.desired } }, '*')).responseBody
    expect(patched.properties.desired).toMatchObject({ mode: 'boost', limits: { max: 3 } })
  })
})

describe('IoT Plug and Play', () => {
  it('keeps the model id a device announces: twin, identity, query, and dt-dataschema on its telemetry', async () => {
    const modelId = 'dtmi:com:example:Thermostat;1'
    const client = await deviceClient('parity-pnp', modelId)
    await client.open()
    const m = new Message('{"temperature":21}')
    m.messageId = 'pnp-1'
    await client.sendEvent(m)
    expect((await registry.getTwin('parity-pnp')).responseBody.modelId).toBe(modelId)
    expect((await registry.get('parity-pnp')).responseBody).toMatchObject({ modelId })
    const page = await registry.createQuery("SELECT * FROM devices WHERE deviceId = 'parity-pnp'").nextAsTwin()
    expect(page.result.map((tw) => tw.modelId)).toEqual([modelId])
    const [event] = eventsOf(await waitForEvents(t, 'parity-pnp', 1), 'parity-pnp')
    expect(event!.systemProperties['dt-dataschema']).toBe(modelId)
    await client.close()
  })
})
