// Issue 16: module clients with the official SDKs, unchanged, on the standard ports. azure-iot-device's
// ModuleClient over Mqtt, MqttWs and Amqp sends telemetry that is read back with its module id, reports and
// receives twin properties, and answers direct methods that azure-iothub's Client invokes on the module.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Client as DeviceClient, Message, ModuleClient, type Twin } from 'azure-iot-device'
import { Mqtt, MqttWs } from 'azure-iot-device-mqtt'
import { Amqp } from 'azure-iot-device-amqp'
import { Client as ServiceClient, Registry } from 'azure-iothub'
import { serviceConnectionString } from '../src/auth/policies.js'
import { startTestHub, type TestHub } from './helpers/test-hub.js'
import { waitForEvents } from './helpers/events.js'

let t: TestHub
let registry: Registry
let service: ServiceClient
const logRecords: Record<string, unknown>[] = []

beforeAll(async () => {
  if (!process.env.NODE_EXTRA_CA_CERTS) throw new Error('run through `npm test`: the SDKs need NODE_EXTRA_CA_CERTS set at process start')
  t = await startTestHub({ mqttPort: 8883, httpsPort: 443, mqttTcpPort: null, amqpPort: 5671, shards: 2 }, { logRecords })
  const cs = serviceConnectionString('localhost', t.hub.policies.find((p) => p.keyName === 'iothubowner')!)
  registry = Registry.fromConnectionString(cs)
  service = ServiceClient.fromConnectionString(cs)
})
afterAll(async () => { await t?.stop() })

/** A device with one module; the module's connection string as Azure's portal shows it. */
async function moduleConnectionString(deviceId: string, moduleId: string): Promise<string> {
  await registry.create({ deviceId })
  const m = (await registry.addModule({ deviceId, moduleId })).responseBody
  return `HostName=localhost;DeviceId=${deviceId};ModuleId=${moduleId};SharedAccessKey=${m.authentication.symmetricKey.primaryKey}`
}

function nextDesired(twin: Twin, key: string): Promise<Record<string, unknown>> {
  return new Promise((resolve) => {
    const on = (delta: Record<string, unknown>) => { if (key in delta) { twin.removeListener('properties.desired', on); resolve(delta) } }
    twin.on('properties.desired', on)
  })
}

describe.each([['Mqtt', Mqtt], ['MqttWs', MqttWs], ['Amqp', Amqp]] as const)('ModuleClient over %s', (name, transport) => {
  it('sends telemetry stamped with its module id, and output events with their output name', async () => {
    const deviceId = `mod-tel-${name.toLowerCase()}`
    const client = ModuleClient.fromConnectionString(await moduleConnectionString(deviceId, 'sensor'), transport)
    await client.open()
    const m = new Message('{"t":1}')
    m.messageId = 'from-module'
    await client.sendEvent(m)
    const out = new Message('filtered')
    out.messageId = 'to-output'
    await client.sendOutputEvent('out1', out)
    await client.close()
    const events = await waitForEvents(t, deviceId, 2)
    expect(events.map((e) => [e.systemProperties['message-id'], e.systemProperties['iothub-connection-module-id'], e.systemProperties['iothub-connection-device-id']]))
      .toEqual([['from-module', 'sensor', deviceId], ['to-output', 'sensor', deviceId]])
    expect(JSON.parse(events[0]!.systemProperties['iothub-connection-auth-method']!).scope).toBe('module')
  }, 30_000)

  it('is connected beside its device: neither connection takes the other over', async () => {
    const deviceId = `mod-beside-${name.toLowerCase()}`
    const moduleClient = ModuleClient.fromConnectionString(await moduleConnectionString(deviceId, 'side'), transport)
    const key = (await registry.get(deviceId)).responseBody.authentication!.symmetricKey!.primaryKey
    const device = DeviceClient.fromConnectionString(`HostName=localhost;DeviceId=${deviceId};SharedAccessKey=${key}`, Mqtt)
    await device.open()
    await moduleClient.open()
    await moduleClient.sendEvent(new Message('module'))
    await device.sendEvent(new Message('device'))
    expect((await registry.get(deviceId)).responseBody.connectionState).toBe('Connected')
    expect((await registry.getModule(deviceId, 'side')).responseBody.connectionState).toBe('Connected')
    expect(logRecords.filter((r) => r.deviceId === deviceId && String(r.reason).startsWith('taken over'))).toEqual([])
    await moduleClient.close()
    await device.close()
  }, 30_000)

  it('reports twin properties and receives desired patches on its own twin, not the device\'s', async () => {
    const deviceId = `mod-twin-${name.toLowerCase()}`
    const client = ModuleClient.fromConnectionString(await moduleConnectionString(deviceId, 'twinned'), transport)
    await client.open()
    const twin = await client.getTwin()
    await new Promise<void>((resolve, reject) => twin.properties.reported.update({ level: 4 }, (e?: Error) => (e ? reject(e) : resolve())))
    const moduleTwin = (await registry.getModuleTwin(deviceId, 'twinned')).responseBody
    expect(moduleTwin.properties.reported).toMatchObject({ level: 4, $version: 2 })
    expect((await registry.getTwin(deviceId)).responseBody.properties.reported.level).toBeUndefined()

    const delta = nextDesired(twin, 'rate')
    await registry.updateModuleTwin(deviceId, 'twinned', { properties: { desired: { rate: 9 } } }, moduleTwin.etag)
    expect(await delta).toMatchObject({ rate: 9, $version: 2 })
    // a change to the device's twin is not the module's
    const deviceDelta = nextDesired(twin, 'marker')
    await registry.updateTwin(deviceId, { properties: { desired: { deviceOnly: 1 } } }, '*')
    await registry.updateModuleTwin(deviceId, 'twinned', { properties: { desired: { marker: true } } }, '*')
    expect(Object.keys(await deviceDelta)).not.toContain('deviceOnly')
    expect(twin.properties.desired.deviceOnly).toBeUndefined()
    // the registry shows the module connected while it is
    expect((await registry.getModule(deviceId, 'twinned')).responseBody.connectionState).toBe('Connected')
    await client.close()
  }, 30_000)

  it('invokeDeviceMethod on the module: 200 with its answer, 404 while it is offline, 504 when it does not answer', async () => {
    const deviceId = `mod-method-${name.toLowerCase()}`
    const client = ModuleClient.fromConnectionString(await moduleConnectionString(deviceId, 'worker'), transport)
    await expect(service.invokeDeviceMethod(deviceId, 'worker', { methodName: 'run', payload: null })).rejects.toMatchObject({ responseBody: expect.stringContaining('DeviceNotOnline') })
    await client.open()
    client.onMethod('run', (req, res) => { void res!.send(200, { ran: req!.payload }) })
    client.onMethod('silent', () => {})
    // connectTimeout waits until the module has subscribed to methods
    const r = await service.invokeDeviceMethod(deviceId, 'worker', { methodName: 'run', payload: { n: 1 }, connectTimeoutInSeconds: 10 })
    expect(r.result).toEqual({ status: 200, payload: { ran: { n: 1 } } })
    // the device itself is not connected: a call to it does not reach the module
    await expect(service.invokeDeviceMethod(deviceId, { methodName: 'run', payload: null })).rejects.toMatchObject({ responseBody: expect.stringContaining('DeviceNotOnline') })
    await expect(service.invokeDeviceMethod(deviceId, 'worker', { methodName: 'silent', payload: null, responseTimeoutInSeconds: 5 })).rejects.toMatchObject({ name: 'GatewayTimeoutError' })
    await expect(service.invokeDeviceMethod(deviceId, 'absent', { methodName: 'run', payload: null })).rejects.toMatchObject({ responseBody: expect.stringContaining('ModuleNotFound') })
    await client.close()
  }, 30_000)
})

describe('a child device through its gateway', () => {
  it('connects with GatewayHostName and its own credentials; the token and username keep HostName', async () => {
    const edge = (await registry.create({ deviceId: 'gw-edge', capabilities: { iotEdge: true } } as Registry.DeviceDescription)).responseBody as unknown as { deviceScope: string }
    const leaf = (await registry.create({ deviceId: 'gw-leaf', deviceScope: edge.deviceScope } as Registry.DeviceDescription)).responseBody
    // the socket goes to the gateway's address; the SAS token's sr and the MQTT username name the hub
    const client = DeviceClient.fromConnectionString(`HostName=localhost;GatewayHostName=127.0.0.1;DeviceId=gw-leaf;SharedAccessKey=${leaf.authentication!.symmetricKey!.primaryKey}`, Mqtt)
    await client.open()
    const m = new Message('through the gateway')
    m.messageId = 'gw-1'
    await client.sendEvent(m)
    await client.close()
    expect((await waitForEvents(t, 'gw-leaf', 1)).map((e) => e.systemProperties['message-id'])).toEqual(['gw-1'])
  }, 30_000)
})
