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
