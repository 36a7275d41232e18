// Issue 16 (first part): module identities over the registry REST API — create, read, list, update
// with etags, delete; Azure's errors (409301, 404010, 404001, 412001, 413003, bad ids); a device's
// deletion takes its modules; modules survive a restart. Module twins: read, patch and replace with
// etags and versions, kept apart from the device's twin, gone with their module.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestHub, tempDir, type TestHub } from './helpers/test-hub.js'
import { MAX_MODULES_PER_DEVICE } from '../src/registry/module-registry.js'

let t: TestHub
beforeAll(async () => { t = await startTestHub() })
afterAll(async () => { await t?.stop() })

const path = (d: string, m?: string) => `/devices/${d}/modules${m === undefined ? '' : `/${encodeURIComponent(m)}`}?api-version=2021-04-12`
const code = (r: { status: number; headers: Record<string, unknown> }) => ({ status: r.status, code: r.headers['iothub-errorcode'] })

describe('module identities', () => {
  it('creates a module with generated keys, reads, lists, updates it with its etag and deletes it', async () => {
    await t.createDevice('mod-dev')
    const created = await t.rest('PUT', path('mod-dev', 'filter'), { body: { moduleId: 'filter', deviceId: 'mod-dev', managedBy: 'IoT Edge' } })
    expect(created.status).toBe(200)
    expect(created.body).toEqual({
      moduleId: 'filter', deviceId: 'mod-dev', generationId: expect.stringMatching(/^\d{18}$/), etag: expect.any(String),
      connectionState: 'Disconnected', connectionStateUpdatedTime: '0001-01-01T00:00:00', lastActivityTime: '0001-01-01T00:00:00', cloudToDeviceMessageCount: 0,
      authentication: { type: 'sas', symmetricKey: { primaryKey: expect.any(String), secondaryKey: expect.any(String) }, x509Thumbprint: { primaryThumbprint: null, secondaryThumbprint: null } },
      managedBy: 'IoT Edge',
    })
    expect(created.headers.etag).toBe(`"${created.body.etag}"`)
    expect((await t.rest('GET', path('mod-dev', 'filter'))).body).toEqual(created.body)
    await t.rest('PUT', path('mod-dev', 'other'), { body: {} })
    expect((await t.rest('GET', path('mod-dev'))).body.map((m: { moduleId: string }) => m.moduleId)).toEqual(['filter', 'other'])
    // an update needs the current etag; it keeps the keys when none are given
    const stale = await t.rest('PUT', path('mod-dev', 'filter'), { body: { managedBy: 'me' }, headers: { 'If-Match': '"not-the-etag"' } })
    expect(code(stale)).toEqual({ status: 412, code: 'PreconditionFailed' })
    const updated = await t.rest('PUT', path('mod-dev', 'filter'), { body: { managedBy: 'me' }, headers: { 'If-Match': `"${created.body.etag}"` } })
    expect({ status: updated.status, managedBy: updated.body.managedBy, keys: updated.body.authentication, sameGeneration: updated.body.generationId === created.body.generationId, newEtag: updated.body.etag !== created.body.etag })
      .toEqual({ status: 200, managedBy: 'me', keys: created.body.authentication, sameGeneration: true, newEtag: true })
    expect(code(await t.rest('DELETE', path('mod-dev', 'filter'), { headers: { 'If-Match': `"${created.body.etag}"` } }))).toEqual({ status: 412, code: 'PreconditionFailed' })
    expect((await t.rest('DELETE', path('mod-dev', 'filter'), { headers: { 'If-Match': '*' } })).status).toBe(204)
    expect(code(await t.rest('GET', path('mod-dev', 'filter')))).toEqual({ status: 404, code: 'ModuleNotFound' })
  })

  it('answers Azure\'s errors: an existing module, a missing device or module, a bad id, too many modules', async () => {
    await t.createDevice('mod-err')
    expect((await t.rest('PUT', path('mod-err', 'm'), { body: {} })).status).toBe(200)
    const again = await t.rest('PUT', path('mod-err', 'm'), { body: {} })
    expect({ ...code(again), message: again.body.Message }).toEqual({ status: 409, code: 'ModuleAlreadyExistsOnDevice', message: "ErrorCode:ModuleAlreadyExistsOnDevice;A module with ID 'm' already exists on device 'mod-err'." })
    expect(code(await t.rest('PUT', path('nobody', 'm'), { body: {} }))).toEqual({ status: 404, code: 'DeviceNotFound' })
    expect(code(await t.rest('GET', path('nobody', 'm')))).toEqual({ status: 404, code: 'DeviceNotFound' })
    expect(code(await t.rest('GET', path('nobody')))).toEqual({ status: 404, code: 'DeviceNotFound' })
    expect(code(await t.rest('PUT', path('mod-err', 'absent'), { body: {}, headers: { 'If-Match': '*' } }))).toEqual({ status: 404, code: 'ModuleNotFound' })
    expect(code(await t.rest('DELETE', path('mod-err', 'absent')))).toEqual({ status: 404, code: 'ModuleNotFound' })
    const badId = await t.rest('PUT', path('mod-err', 'bad#id'), { body: {} })
    expect({ ...code(badId), message: badId.body.Message }).toEqual({ status: 400, code: 'ArgumentInvalid', message: 'ErrorCode:ArgumentInvalid;ModuleId "bad#id" is invalid: 1-128 ASCII letters, digits or - . % _ * ? ! ( ) , : = @ $ \'' })
    expect(code(await t.rest('PUT', path('mod-err', 'x'), { body: { moduleId: 'y' } }))).toEqual({ status: 400, code: 'ArgumentInvalid' })
    for (let i = 1; i < MAX_MODULES_PER_DEVICE; i++) expect((await t.rest('PUT', path('mod-err', `n${i}`), { body: {} })).status).toBe(200)
    const tooMany = await t.rest('PUT', path('mod-err', 'one-more'), { body: {} })
    expect(code(tooMany)).toEqual({ status: 413, code: 'TooManyModulesOnDevice' })
    expect((await t.rest('GET', path('mod-err'))).body).toHaveLength(MAX_MODULES_PER_DEVICE)
  })

  it('deleting a device deletes its modules and their twins: the device created again has none', async () => {
    await t.createDevice('mod-gone')
    await t.rest('PUT', path('mod-gone', 'a'), { body: {} })
    await t.rest('PATCH', `/twins/mod-gone/modules/a?api-version=2021-04-12`, { body: { tags: { old: true } } })
    expect((await t.rest('DELETE', '/devices/mod-gone?api-version=2021-04-12')).status).toBe(204)
    expect(code(await t.rest('GET', path('mod-gone', 'a')))).toEqual({ status: 404, code: 'DeviceNotFound' })
    await t.createDevice('mod-gone')
    expect((await t.rest('GET', path('mod-gone'))).body).toEqual([])
    expect(code(await t.rest('GET', path('mod-gone', 'a')))).toEqual({ status: 404, code: 'ModuleNotFound' })
    // its twin went too: the module made again starts from a fresh one
    await t.rest('PUT', path('mod-gone', 'a'), { body: {} })
    expect((await t.rest('GET', `/twins/mod-gone/modules/a?api-version=2021-04-12`)).body).toMatchObject({ version: 1 })
    expect((await t.rest('GET', `/twins/mod-gone/modules/a?api-version=2021-04-12`)).body.tags).toBeUndefined()
  })
})

describe('module twins', () => {
  const twin = (d: string, m: string) => `/twins/${d}/modules/${m}?api-version=2021-04-12`

  it('reads, patches (with the etag) and replaces a module twin, apart from its device\'s twin', async () => {
    await t.createDevice('mt-dev')
    const mod = (await t.rest('PUT', path('mt-dev', 'mt'), { body: {} })).body
    const first = await t.rest('GET', twin('mt-dev', 'mt'))
    expect(first.body).toMatchObject({ deviceId: 'mt-dev', moduleId: 'mt', deviceEtag: mod.etag, version: 1, authenticationType: 'sas', properties: { desired: { $version: 1 }, reported: { $version: 1 } } })
    const patched = await t.rest('PATCH', twin('mt-dev', 'mt'), { body: { tags: { role: 'filter' }, properties: { desired: { threshold: 5 } } }, headers: { 'If-Match': first.headers.etag as string } })
    expect({ status: patched.status, tags: patched.body.tags, desired: patched.body.properties.desired.threshold, version: patched.body.version }).toEqual({ status: 200, tags: { role: 'filter' }, desired: 5, version: 2 })
    const stale = await t.rest('PATCH', twin('mt-dev', 'mt'), { body: { tags: { role: 'x' } }, headers: { 'If-Match': first.headers.etag as string } })
    expect(code(stale)).toEqual({ status: 412, code: 'PreconditionFailed' })
    const replaced = await t.rest('PUT', twin('mt-dev', 'mt'), { body: { tags: { only: 'this' }, properties: { desired: { a: 1 } } } })
    expect({ tags: replaced.body.tags, desired: replaced.body.properties.desired.a, threshold: replaced.body.properties.desired.threshold }).toEqual({ tags: { only: 'this' }, desired: 1, threshold: undefined })
    // the device's own twin is untouched
    const deviceTwin = (await t.rest('GET', '/twins/mt-dev?api-version=2021-04-12')).body
    expect({ tags: deviceTwin.tags, desired: deviceTwin.properties.desired }).toEqual({ tags: undefined, desired: { $metadata: expect.any(Object), $version: 1 } })
    expect(code(await t.rest('GET', twin('mt-dev', 'absent')))).toEqual({ status: 404, code: 'ModuleNotFound' })
    expect(code(await t.rest('GET', twin('nobody', 'mt')))).toEqual({ status: 404, code: 'DeviceNotFound' })
  })

  it('devices.modules queries find module twins by tags, properties and ids', async () => {
    await t.createDevice('mq-dev')
    for (const m of ['mq-a', 'mq-b']) await t.rest('PUT', path('mq-dev', m), { body: {} })
    await t.rest('PATCH', twin('mq-dev', 'mq-a'), { body: { tags: { env: 'test' }, properties: { desired: { level: 2 } } } })
    const q = (query: string) => t.rest('POST', '/devices/query?api-version=2021-04-12', { body: { query } })
    const hit = await q("SELECT * FROM devices.modules WHERE tags.env = 'test'")
    expect({ status: hit.status, found: hit.body.map((x: { deviceId: string; moduleId: string }) => `${x.deviceId}/${x.moduleId}`) }).toEqual({ status: 200, found: ['mq-dev/mq-a'] })
    expect(hit.body[0]).toMatchObject({ properties: { desired: { level: 2 } }, version: 2 })
    const both = await q("SELECT moduleId FROM devices.modules WHERE deviceId = 'mq-dev'")
    expect(both.body).toEqual([{ moduleId: 'mq-a' }, { moduleId: 'mq-b' }])
    // module twins are not devices
    expect((await q("SELECT * FROM devices WHERE deviceId = 'mq-dev/mq-a'")).body).toEqual([])
  })

  it('a module created again has a fresh twin', async () => {
    await t.createDevice('mt-again')
    await t.rest('PUT', path('mt-again', 'm'), { body: {} })
    await t.rest('PATCH', twin('mt-again', 'm'), { body: { tags: { old: true } } })
    expect((await t.rest('DELETE', path('mt-again', 'm'))).status).toBe(204)
    await t.rest('PUT', path('mt-again', 'm'), { body: {} })
    const fresh = (await t.rest('GET', twin('mt-again', 'm'))).body
    expect({ tags: fresh.tags, version: fresh.version }).toEqual({ tags: undefined, version: 1 })
  })
})

describe('module identities across a restart', () => {
  it('keeps modules and their keys', async () => {
    const dataDir = tempDir()
    let hub = await startTestHub({}, { dataDir })
    await hub.createDevice('mod-keep')
    const made = (await hub.rest('PUT', path('mod-keep', 'kept'), { body: {} })).body
    await hub.stop()
    hub = await startTestHub({}, { dataDir })
    try {
      expect((await hub.rest('GET', path('mod-keep', 'kept'))).body).toEqual(made)
    } finally {
      await hub.stop()
    }
  })
})
