// Issue 16: automatic device and module configurations with azure-iothub's Registry, on the standard
// port. A configuration targeting tags.env='test' writes its content into the desired properties of
// the matching twins (a connected device gets the patch), marks them Applied, and reports its system
// and custom metrics; a higher priority wins a twin; content is fixed once created; a module
// configuration reaches module twins; an IoT Edge deployment reaches the edge device's modules.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Client as DeviceClient, type Twin } from 'azure-iot-device'
import { Mqtt } from 'azure-iot-device-mqtt'
import { Registry } from 'azure-iothub'
import type { Configuration } from 'azure-iothub/dist/configuration.js'
import { startTestHub, type TestHub } from './helpers/test-hub.js'
import { until } from './helpers/device-mqtt.js'

let t: TestHub
let registry: Registry
beforeAll(async () => {
  if (!process.env.NODE_EXTRA_CA_CERTS) throw new Error('run through `npm test`: the SDKs need NODE_EXTRA_CA_CERTS set at process start')
  // a cycle a second (Azure's is about five minutes)
  // two shards: a module's twin lives in its device's shard, not the one its `d/m` key would hash to
  t = await startTestHub({ httpsPort: 443, mqttPort: 8883, mqttTcpPort: null, amqpPort: null, configurationIntervalSeconds: 1, shards: 2 })
  registry = Registry.fromConnectionString(`HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=${t.policyKey('iothubowner')}`)
})
afterAll(async () => { await t?.stop() })

const config = (id: string, extra: Partial<Configuration>): Configuration => ({ id, schemaVersion: '1.0', content: {}, ...extra } as Configuration)
const results = async (id: string) => {
  const c = (await registry.getConfiguration(id)).responseBody
  return { system: c.systemMetrics?.results, custom: c.metrics?.results }
}
const twinOf = async (id: string) => (await registry.getTwin(id)).responseBody as unknown as { properties: { desired: Record<string, any> }; configurations?: Record<string, { status: string }> }

function nextDesired(twin: Twin, key: string): Promise<Record<string, unknown>> {
  return new Promise((resolve) => {
    const on = (delta: Record<string, unknown>) => { if (key in delta) { twin.removeListener('properties.desired', on); resolve(delta) } }
    twin.on('properties.desired', on)
  })
}

describe('automatic device configurations', () => {
  it('a configuration targeting tags.env=\'test\' sets the desired properties of the matching twins and reports its metrics', async () => {
    for (const [id, env] of [['cfg-a', 'test'], ['cfg-b', 'test'], ['cfg-c', 'prod']] as const) {
      await registry.create({ deviceId: id })
      await registry.updateTwin(id, { tags: { env } }, '*')
    }
    const key = (await registry.get('cfg-a')).responseBody.authentication!.symmetricKey!.primaryKey
    const device = DeviceClient.fromConnectionString(`HostName=localhost;DeviceId=cfg-a;SharedAccessKey=${key}`, Mqtt)
    await device.open()
    const twin = await device.getTwin()
    const pushed = nextDesired(twin, 'settings')

    await registry.addConfiguration(config('cfg-low', {
      content: { deviceContent: { 'properties.desired.settings': { rate: 5 } } }, targetCondition: "tags.env='test'", priority: 1,
      metrics: { queries: { reporting: 'SELECT deviceId FROM devices WHERE properties.reported.rate = 5' } },
    }))
    expect(await pushed).toMatchObject({ settings: { rate: 5 } })
    expect(await until(() => results('cfg-low'), (r) => r.system?.appliedCount === 2)).toEqual({ system: { targetedCount: 2, appliedCount: 2 }, custom: { reporting: 0 } })
    for (const id of ['cfg-a', 'cfg-b']) {
      const tw = await twinOf(id)
      expect([tw.properties.desired.settings, tw.configurations]).toEqual([{ rate: 5 }, { 'cfg-low': { status: 'Applied' } }])
    }
    const untouched = await twinOf('cfg-c')
    expect([untouched.properties.desired.settings, untouched.configurations]).toEqual([undefined, undefined])

    // the device acts on it: the custom metric counts it
    await new Promise<void>((resolve, reject) => twin.properties.reported.update({ rate: 5 }, (e?: Error) => (e ? reject(e) : resolve())))
    expect((await until(() => results('cfg-low'), (r) => r.custom?.reporting === 1)).custom).toEqual({ reporting: 1 })
    await device.close()

    // the twin's configurations are queryable, as the applied-count system query reads them
    const applied = await registry.createQuery("SELECT deviceId FROM devices WHERE configurations.[[cfg-low]].status = 'Applied'").nextAsTwin()
    expect(applied.result.map((d) => d.deviceId).sort()).toEqual(['cfg-a', 'cfg-b'])
  }, 30_000)

  it('a higher priority wins a twin; the other becomes Targeted; deleting the winner gives the twin back', async () => {
    await registry.addConfiguration(config('cfg-high', {
      content: { deviceContent: { 'properties.desired.settings.rate': 9 } }, targetCondition: "tags.env='test' AND deviceId='cfg-b'", priority: 10,
    }))
    const b = await until(() => twinOf('cfg-b'), (tw) => tw.configurations?.['cfg-high']?.status === 'Applied')
    expect([b.properties.desired.settings, b.configurations]).toEqual([{ rate: 9 }, { 'cfg-low': { status: 'Targeted' }, 'cfg-high': { status: 'Applied' } }])
    expect((await until(() => results('cfg-low'), (r) => r.system?.appliedCount === 1)).system).toEqual({ targetedCount: 2, appliedCount: 1 })
    await registry.removeConfiguration('cfg-high')
    const back = await until(() => twinOf('cfg-b'), (tw) => tw.configurations?.['cfg-low']?.status === 'Applied')
    expect([back.properties.desired.settings, back.configurations]).toEqual([{ rate: 5 }, { 'cfg-low': { status: 'Applied' } }])
  }, 30_000)

  it('content is fixed once created; the target condition may change; errors are Azure\'s', async () => {
    const got = (await registry.getConfiguration('cfg-low')).responseBody
    await expect(registry.updateConfiguration({ ...got, content: { deviceContent: { 'properties.desired.other': 1 } } })).rejects.toMatchObject({ responseBody: expect.stringContaining('cannot be changed once created') })
    // narrowed to cfg-a: cfg-b is no longer targeted and loses its entry, keeping what was written
    await registry.updateConfiguration({ ...got, targetCondition: "tags.env='test' AND deviceId='cfg-a'" })
    const b = await until(() => twinOf('cfg-b'), (tw) => tw.configurations === undefined)
    expect(b.properties.desired.settings).toEqual({ rate: 5 })
    await expect(registry.getConfiguration('cfg-absent')).rejects.toMatchObject({ responseBody: expect.stringContaining('ConfigurationNotFound') })
    await expect(registry.addConfiguration(config('cfg-low', { content: { deviceContent: { 'properties.desired.x': 1 } } }))).rejects.toMatchObject({ responseBody: expect.stringContaining('already exists') })
    await expect(registry.addConfiguration(config('cfg-bad', { content: { deviceContent: { 'properties.reported.x': 1 } } }))).rejects.toMatchObject({ responseBody: expect.stringContaining('may only set desired properties') })
    await expect(registry.addConfiguration(config('cfg-bad', { content: { deviceContent: { 'properties.desired.x': 1 } }, targetCondition: 'tags.env = = 1' }))).rejects.toMatchObject({ responseBody: expect.stringContaining('The query is invalid') })
    expect((await registry.getConfigurations()).responseBody.map((c) => c.id)).toEqual(['cfg-low'])
  }, 30_000)

  it('a module configuration sets module twins; an IoT Edge deployment sets the edge device\'s modules', async () => {
    await registry.create({ deviceId: 'cfg-mod-dev' })
    await registry.addModule({ deviceId: 'cfg-mod-dev', moduleId: 'sensor' })
    await registry.addConfiguration(config('cfg-modules', { content: { moduleContent: { 'properties.desired.interval': 30 } }, targetCondition: "moduleId='sensor'" }))
    const mt = await until(async () => (await registry.getModuleTwin('cfg-mod-dev', 'sensor')).responseBody as unknown as { properties: { desired: Record<string, unknown> }; configurations?: unknown },
      (tw) => tw.properties.desired.interval === 30)
    expect(mt.configurations).toEqual({ 'cfg-modules': { status: 'Applied' } })
    expect((await twinOf('cfg-mod-dev')).properties.desired.interval).toBeUndefined()

    await registry.create({ deviceId: 'cfg-edge', capabilities: { iotEdge: true } } as never)
    await registry.addModule({ deviceId: 'cfg-edge', moduleId: '$edgeAgent' })
    await registry.applyConfigurationContentOnDevice('cfg-edge', { modulesContent: { $edgeAgent: { 'properties.desired': { schemaVersion: '1.1', modules: {} } } } })
    expect((await registry.getModuleTwin('cfg-edge', '$edgeAgent')).responseBody.properties.desired).toMatchObject({ schemaVersion: '1.1' })
    await expect(registry.applyConfigurationContentOnDevice('cfg-mod-dev', { modulesContent: {} })).rejects.toMatchObject({ responseBody: expect.stringContaining('not an IoT Edge device') })
    // a deployment through the cycle: the winning edge deployment writes the modules the device has
    await registry.addModule({ deviceId: 'cfg-edge', moduleId: '$edgeHub' })
    await registry.updateTwin('cfg-edge', { tags: { ring: 'edge' } }, '*')
    await registry.addConfiguration(config('cfg-deploy', {
      content: { modulesContent: { $edgeHub: { 'properties.desired': { routes: { all: 'FROM /* INTO $upstream' } } }, $absent: { 'properties.desired': { x: 1 } } } },
      targetCondition: "tags.ring='edge'",
    }))
    const hub = await until(async () => (await registry.getModuleTwin('cfg-edge', '$edgeHub')).responseBody.properties.desired, (d) => d.routes !== undefined)
    expect(hub.routes).toEqual({ all: 'FROM /* INTO $upstream' })
    expect((await twinOf('cfg-edge')).configurations).toEqual({ 'cfg-deploy': { status: 'Applied' } })
  }, 30_000)
})
