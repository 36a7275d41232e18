// Issue 16 (first part) with the official service SDK on the standard port: azure-iothub's Registry
// adds, reads, lists, updates and removes module identities, and reads and updates module twins;
// its errors are those it gets from Azure.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Registry } from 'azure-iothub'
import { startTestHub, type TestHub } from './helpers/test-hub.js'

let t: TestHub
let registry: Registry
beforeAll(async () => {
  if (!process.env.NODE_EXTRA_CA_CERTS) throw new Error('run through `npm test`: the SDKs need NODE_EXTRA_CA_CERTS set at process start')
  t = await startTestHub({ httpsPort: 443, mqttPort: 0, amqpPort: null })
  registry = Registry.fromConnectionString(`HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=${t.policyKey('iothubowner')}`)
})
afterAll(async () => { await t?.stop() })

describe('azure-iothub Registry and modules', () => {
  it('addModule, getModule, getModulesOnDevice, updateModule and removeModule', async () => {
    await registry.create({ deviceId: 'sdk-mod-dev' })
    const added = (await registry.addModule({ deviceId: 'sdk-mod-dev', moduleId: 'sensor' })).responseBody
    expect({ moduleId: added.moduleId, deviceId: added.deviceId, type: added.authentication.type, key: typeof added.authentication.symmetricKey.primaryKey }).toEqual({ moduleId: 'sensor', deviceId: 'sdk-mod-dev', type: 'sas', key: 'string' })
    await registry.addModule({ deviceId: 'sdk-mod-dev', moduleId: 'filter', managedBy: 'IoT Edge' })
    const got = (await registry.getModule('sdk-mod-dev', 'sensor')).responseBody
    expect(got.etag).toBe(added.etag)
    expect((await registry.getModulesOnDevice('sdk-mod-dev')).responseBody.map((m) => [m.moduleId, m.managedBy])).toEqual([['sensor', null], ['filter', 'IoT Edge']])
    const updated = (await registry.updateModule({ ...got, managedBy: 'me' })).responseBody
    expect({ managedBy: updated.managedBy, key: updated.authentication.symmetricKey.primaryKey }).toEqual({ managedBy: 'me', key: added.authentication.symmetricKey.primaryKey })
    await registry.removeModule('sdk-mod-dev', 'sensor')
    // 404010 ModuleNotFound: the SDK maps only DeviceNotFound to its own type, as against Azure
    await expect(registry.getModule('sdk-mod-dev', 'sensor')).rejects.toThrow(/^Not found$/)
    await expect(registry.addModule({ deviceId: 'sdk-mod-dev', moduleId: 'filter' })).rejects.toMatchObject({ name: 'DeviceAlreadyExistsError' })
    await expect(registry.addModule({ deviceId: 'sdk-no-device', moduleId: 'x' })).rejects.toMatchObject({ name: 'DeviceNotFoundError' })
  })

  it('getModuleTwin and updateModuleTwin with its etag', async () => {
    await registry.create({ deviceId: 'sdk-mt-dev' })
    await registry.addModule({ deviceId: 'sdk-mt-dev', moduleId: 'twinned' })
    const twin = (await registry.getModuleTwin('sdk-mt-dev', 'twinned')).responseBody
    expect({ deviceId: twin.deviceId, moduleId: twin.moduleId }).toEqual({ deviceId: 'sdk-mt-dev', moduleId: 'twinned' })
    const updated = (await registry.updateModuleTwin('sdk-mt-dev', 'twinned', { tags: { role: 'filter' }, properties: { desired: { level: 3 } } }, twin.etag)).responseBody
    expect({ tags: updated.tags, level: updated.properties.desired.level }).toEqual({ tags: { role: 'filter' }, level: 3 })
    await expect(registry.updateModuleTwin('sdk-mt-dev', 'twinned', { tags: { role: 'x' } }, twin.etag)).rejects.toMatchObject({ name: 'InvalidEtagError' })
  })
})

/** A device body with fixed keys, as the official suite's edge scenarios create them. */
const withKeys = (deviceId: string, extra: Record<string, unknown> = {}) => ({
  deviceId, status: 'enabled' as const, ...extra,
  authentication: { symmetricKey: { primaryKey: Buffer.from('1234567890qwerty').toString('base64'), secondaryKey: Buffer.from('ytrewq0987654321').toString('base64') } },
})

/** The SDK's typings lack the scope fields its registry calls carry. */
type ScopedDevice = Registry.DeviceDescription & { deviceScope?: string; parentScopes?: string[]; capabilities?: { iotEdge: boolean } }
const create = async (body: Record<string, unknown>) => (await registry.create(body as Registry.DeviceDescription)).responseBody as ScopedDevice
const update = (body: ScopedDevice) => registry.update(body)

describe('IoT Edge scopes (the official suite\'s edge scope and nested edge scenarios)', () => {
  it('an edge device gets a scope; a leaf created with it keeps it and cannot change it to one no edge device has', async () => {
    const edge = await create(withKeys('scope-edge', { capabilities: { iotEdge: true } }))
    expect(edge.capabilities!.iotEdge).toBe(true)
    expect(edge.deviceScope).toMatch(/^ms-azure-iot-edge:\/\/scope-edge-\d{18}$/)
    expect(edge.parentScopes).toEqual([])
    const leaf = await create(withKeys('scope-leaf', { deviceScope: edge.deviceScope }))
    expect({ deviceScope: leaf.deviceScope, parentScopes: leaf.parentScopes }).toEqual({ deviceScope: edge.deviceScope, parentScopes: [edge.deviceScope] })
    await expect(update({ ...leaf, deviceScope: '9a4c5f6e-0000-4000-8000-000000000000' })).rejects.toMatchObject({ responseBody: expect.stringContaining('InvalidDeviceScope') })
    // the edge device's own scope cannot be changed either
    await expect(update({ ...edge, deviceScope: 'ms-azure-iot-edge://other-1' })).rejects.toMatchObject({ responseBody: expect.stringContaining('InvalidDeviceScope') })
    // a plain device has neither field
    const plain = await create(withKeys('scope-plain'))
    expect([plain.deviceScope, plain.parentScopes]).toEqual([undefined, undefined])
    // the twin carries them too
    expect((await registry.getTwin('scope-leaf')).responseBody).toMatchObject({ deviceScope: edge.deviceScope, parentScopes: [edge.deviceScope] })
  })

  it('nested edge: a child edge below a root edge, a leaf below the child; no second parent, no cycle', async () => {
    const root = await create(withKeys('nest-root', { capabilities: { iotEdge: true } }))
    const child = await create(withKeys('nest-child', { capabilities: { iotEdge: true }, parentScopes: [root.deviceScope] }))
    expect(child.deviceScope).toMatch(/^ms-azure-iot-edge:\/\/nest-child-/)
    expect(child.parentScopes).toEqual([root.deviceScope])
    const leaf = await create(withKeys('nest-leaf', { deviceScope: child.deviceScope, parentScopes: [child.deviceScope] }))
    expect({ deviceScope: leaf.deviceScope, parentScopes: leaf.parentScopes }).toEqual({ deviceScope: child.deviceScope, parentScopes: [child.deviceScope] })
    await expect(create(withKeys('nest-two', { parentScopes: [root.deviceScope, child.deviceScope] }))).rejects.toMatchObject({ responseBody: expect.stringContaining('at most one parent') })
    await expect(create(withKeys('nest-mixed', { deviceScope: root.deviceScope, parentScopes: [child.deviceScope] }))).rejects.toMatchObject({ responseBody: expect.stringContaining('InvalidDeviceScope') })
    // the root cannot be put below its own child
    await expect(update({ ...root, parentScopes: [child.deviceScope!] })).rejects.toMatchObject({ responseBody: expect.stringContaining('cannot be its parent') })
    // a leaf's scope must name an edge device, not a leaf
    await expect(create(withKeys('nest-bad', { parentScopes: ['ms-azure-iot-edge://nobody-1'] }))).rejects.toMatchObject({ responseBody: expect.stringContaining('no edge device has the scope') })
  })
})
