// Issue 16: IoT Plug and Play's digital twin API with azure-iothub's DigitalTwinClient, on the
// standard port, against a device that behaves as the SDK's thermostat sample does: it connects
// announcing dtmi:com:example:Thermostat;1, reports maxTempSinceLastReboot, acknowledges writable
// targetTemperature with {value, ac, av, ad}, and answers the getMaxMinReport command; a
// temperature-controller-style component (`thermostat1`) answers `thermostat1*getMaxMinReport`.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Client as DeviceClient, type Twin } from 'azure-iot-device'
import { Mqtt } from 'azure-iot-device-mqtt'
import { DigitalTwinClient, IoTHubTokenCredentials, Registry } from 'azure-iothub'
import { startTestHub, type TestHub } from './helpers/test-hub.js'
import { until } from './helpers/device-mqtt.js'

let t: TestHub
let registry: Registry
let digitalTwins: DigitalTwinClient
beforeAll(async () => {
  if (!process.env.NODE_EXTRA_CA_CERTS) throw new Error('run through `npm test`: the SDKs need NODE_EXTRA_CA_CERTS set at process start')
  t = await startTestHub({ httpsPort: 443, mqttPort: 8883, mqttTcpPort: null, amqpPort: null })
  const cs = `HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=${t.policyKey('iothubowner')}`
  registry = Registry.fromConnectionString(cs)
  digitalTwins = new DigitalTwinClient(new IoTHubTokenCredentials(cs))
})
afterAll(async () => { await t?.stop() })

const MODEL = 'dtmi:com:example:Thermostat;1'
const report = (twin: Twin, patch: Record<string, unknown>) =>
  new Promise<void>((resolve, reject) => twin.properties.reported.update(patch, (e?: Error) => (e ? reject(e) : resolve())))

/** The thermostat sample's device side: reports, acknowledges writable properties, answers its command. */
async function thermostat(deviceId: string): Promise<DeviceClient> {
  const key = (await registry.create({ deviceId })).responseBody.authentication!.symmetricKey!.primaryKey
  const client = DeviceClient.fromConnectionString(`HostName=localhost;DeviceId=${deviceId};SharedAccessKey=${key}`, Mqtt)
  await client.setOptions({ modelId: MODEL })
  await client.open()
  const twin = await client.getTwin()
  await report(twin, { maxTempSinceLastReboot: 30, thermostat1: { __t: 'c', maxTempSinceLastReboot: 25 } })
  twin.on('properties.desired', (delta: Record<string, any>) => {
    if (delta.targetTemperature !== undefined) {
      void report(twin, { targetTemperature: { value: delta.targetTemperature, ac: 200, av: delta.$version, ad: 'Successfully executed patch' } })
    }
  })
  client.onDeviceMethod('getMaxMinReport', (req, res) => { void res.send(200, { maxTemp: 30, minTemp: 10, since: req.payload }) })
  client.onDeviceMethod('thermostat1*getMaxMinReport', (_req, res) => { void res.send(200, { maxTemp: 25, component: 'thermostat1' }) })
  return client
}

// the SDK's typings miss the digital twin's own fields; its HTTP layer keeps what the hub answered
type Doc = Record<string, any>
const getDigitalTwin = async (id: string) => (await digitalTwins.getDigitalTwin(id)) as unknown as Doc
const update = (id: string, patch: unknown[], etag?: string) => digitalTwins.updateDigitalTwin(id, patch, etag)
type CommandReply = { _response: { parsedBody: unknown; headers: { get(name: string): string | undefined } } }
const invoke = async (id: string, name: string, arg: unknown, options?: { connectTimeoutInSeconds?: number }) => (await digitalTwins.invokeCommand(id, name, arg, options)) as unknown as CommandReply
const invokeComponent = async (id: string, component: string, name: string, arg: unknown) => (await digitalTwins.invokeComponentCommand(id, component, name, arg)) as unknown as CommandReply

describe('digital twins (IoT Plug and Play)', () => {
  it('reads the thermostat\'s digital twin with its model, writes a property it acknowledges, and runs its commands', async () => {
    const device = await thermostat('pnp-thermostat')
    const first = await getDigitalTwin('pnp-thermostat')
    expect(first).toMatchObject({ $dtId: 'pnp-thermostat', maxTempSinceLastReboot: 30, $metadata: { $model: MODEL, maxTempSinceLastReboot: { lastUpdateTime: expect.any(String) } } })
    expect(first.thermostat1).toMatchObject({ maxTempSinceLastReboot: 25, $metadata: { maxTempSinceLastReboot: { lastUpdateTime: expect.any(String) } } })

    // the SDK resolves with nothing on the 202 (the raw answer is checked below)
    await update('pnp-thermostat', [{ op: 'add', path: '/targetTemperature', value: 42 }], first.$etag)
    const acked = await until(() => getDigitalTwin('pnp-thermostat'), (d) => d.targetTemperature === 42)
    expect(acked.$metadata.targetTemperature).toMatchObject({ desiredValue: 42, desiredVersion: 2, ackVersion: 2, ackCode: 200, ackDescription: 'Successfully executed patch' })
    // the etag it was written with is stale now
    await expect(update('pnp-thermostat', [{ op: 'add', path: '/targetTemperature', value: 1 }], first.$etag)).rejects.toMatchObject({ statusCode: 412 })

    const root = await invoke('pnp-thermostat', 'getMaxMinReport', '2026-01-01T00:00:00Z', { connectTimeoutInSeconds: 10 })
    expect(root._response.parsedBody).toEqual({ maxTemp: 30, minTemp: 10, since: '2026-01-01T00:00:00Z' })
    expect(root._response.headers.get('x-ms-command-statuscode')).toBe('200')
    const component = await invokeComponent('pnp-thermostat', 'thermostat1', 'getMaxMinReport', {})
    expect(component._response.parsedBody).toEqual({ maxTemp: 25, component: 'thermostat1' })
    await device.close()
    // offline: the command fails as a direct method does
    await expect(invoke('pnp-thermostat', 'getMaxMinReport', {})).rejects.toMatchObject({ statusCode: 404 })
  }, 30_000)

  it('a component property is written inside its component; bad patches and unknown twins get Azure\'s errors', async () => {
    const device = await thermostat('pnp-component')
    const raw = await t.rest('PATCH', '/digitaltwins/pnp-component?api-version=2021-04-12', { body: [{ op: 'add', path: '/thermostat1/targetTemperature', value: 21 }] })
    expect({ status: raw.status, etag: raw.headers.etag, body: raw.text }).toEqual({ status: 202, etag: expect.stringMatching(/^"/), body: '' })
    const twin = (await registry.getTwin('pnp-component')).responseBody
    expect(twin.properties.desired.thermostat1).toEqual({ __t: 'c', targetTemperature: 21 })
    await expect(update('pnp-component', [{ op: 'move', from: '/a', path: '/b' }])).rejects.toMatchObject({ statusCode: 400 })
    await expect(getDigitalTwin('pnp-nobody')).rejects.toMatchObject({ statusCode: 404 })
    await device.close()
  }, 30_000)
})
