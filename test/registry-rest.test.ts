// The identity registry over the service REST API: CRUD, etags, rights and Azure's error format.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createSasToken } from '../src/auth/sas-token.js'
import { startTestHub, type TestHub } from './helpers/test-hub.js'

const Q = '?api-version=2021-04-12'
let t: TestHub
beforeAll(async () => { t = await startTestHub() })
afterAll(async () => { await t.stop() })

function expectHubError(r: { status: number; headers: Record<string, unknown>; body: any }, status: number, name: string): void {
  expect(r.status).toBe(status)
  expect(r.headers['iothub-errorcode']).toBe(name)
  expect(r.body.Message).toMatch(new RegExp(`^ErrorCode:${name};`))
  expect(r.body.ExceptionMessage).toMatch(/^Tracking ID:[0-9a-f]{32}-G:0-TimeStamp:\d\d\/\d\d\/\d{4} \d\d:\d\d:\d\d$/)
}

describe('devices', () => {
  it('creates a device with generated keys and returns Azure\'s identity JSON', async () => {
    const r = await t.rest('PUT', `/devices/reg-1${Q}`, { body: { deviceId: 'reg-1', authentication: { type: 'sas', symmetricKey: { primaryKey: '', secondaryKey: '' } } } })
    expect(r.status).toBe(200)
    expect(r.headers.etag).toBe(`"${r.body.etag}"`)
    expect(r.body).toMatchObject({
      deviceId: 'reg-1', status: 'enabled', statusReason: null, connectionState: 'Disconnected',
      connectionStateUpdatedTime: '0001-01-01T00:00:00', lastActivityTime: '0001-01-01T00:00:00',
      cloudToDeviceMessageCount: 0, capabilities: { iotEdge: false }, authentication: { type: 'sas' },
    })
    expect(Buffer.from(r.body.authentication.symmetricKey.primaryKey, 'base64')).toHaveLength(32)
    expect(r.body.authentication.symmetricKey.secondaryKey).not.toBe(r.body.authentication.symmetricKey.primaryKey)
    expect(r.body.generationId).toMatch(/^\d{18}$/)
  })

  it('refuses to create an existing device (409001)', async () => {
    await t.createDevice('reg-dup')
    expectHubError(await t.rest('PUT', `/devices/reg-dup${Q}`, { body: { deviceId: 'reg-dup' } }), 409, 'DeviceAlreadyExists')
  })

  it('updates with a matching etag or "*", and refuses a wrong one (412001)', async () => {
    const created = await t.createDevice('reg-etag')
    const wrong = await t.rest('PUT', `/devices/reg-etag${Q}`, { body: { deviceId: 'reg-etag', status: 'disabled' }, headers: { 'If-Match': '"bm90LWl0"' } })
    expectHubError(wrong, 412, 'PreconditionFailed')
    expect((await t.rest('GET', `/devices/reg-etag${Q}`)).body.status).toBe('enabled')
    const ok = await t.rest('PUT', `/devices/reg-etag${Q}`, { body: { deviceId: 'reg-etag', status: 'disabled', statusReason: 'maintenance' }, headers: { 'If-Match': `"${created.etag}"` } })
    expect(ok.status).toBe(200)
    expect(ok.body).toMatchObject({ status: 'disabled', statusReason: 'maintenance' })
    expect(ok.body.etag).not.toBe(created.etag)
    expect(ok.body.statusUpdatedTime).not.toBe('0001-01-01T00:00:00')
    // keys survive an update that does not mention them
    expect(ok.body.authentication.symmetricKey.primaryKey).toBe(created.primaryKey)
    const forced = await t.rest('PUT', `/devices/reg-etag${Q}`, { body: { deviceId: 'reg-etag', status: 'enabled' }, headers: { 'If-Match': '"*"' } })
    expect(forced.status).toBe(200)
    expect(forced.body.status).toBe('enabled')
  })

  it('gets, lists and deletes; unknown devices are 404001', async () => {
    await t.createDevice('reg-list-a')
    const got = await t.rest('GET', `/devices/reg-list-a${Q}`)
    expect(got.body.deviceId).toBe('reg-list-a')
    const list = await t.rest('GET', `/devices/${Q}`)
    expect(list.status).toBe(200)
    expect(list.body.map((d: { deviceId: string }) => d.deviceId)).toContain('reg-list-a')
    expect((await t.rest('GET', `/devices${Q}&top=1`)).body).toHaveLength(1)
    expectHubError(await t.rest('GET', `/devices${Q}&top=5000`), 400, 'ArgumentInvalid')
    expect((await t.rest('DELETE', `/devices/reg-list-a${Q}`, { headers: { 'If-Match': '"*"' } })).status).toBe(204)
    expectHubError(await t.rest('GET', `/devices/reg-list-a${Q}`), 404, 'DeviceNotFound')
    expectHubError(await t.rest('DELETE', `/devices/reg-list-a${Q}`), 404, 'DeviceNotFound')
  })

  it('refuses a delete with a stale etag', async () => {
    const d = await t.createDevice('reg-del-etag')
    expectHubError(await t.rest('DELETE', `/devices/reg-del-etag${Q}`, { headers: { 'If-Match': '"c3RhbGU="' } }), 412, 'PreconditionFailed')
    expect((await t.rest('DELETE', `/devices/reg-del-etag${Q}`, { headers: { 'If-Match': `"${d.etag}"` } })).status).toBe(204)
  })

  it('recreating a device gives it a new generation id', async () => {
    const first = await t.rest('PUT', `/devices/reg-gen${Q}`, { body: { deviceId: 'reg-gen' } })
    await t.rest('DELETE', `/devices/reg-gen${Q}`)
    const second = await t.rest('PUT', `/devices/reg-gen${Q}`, { body: { deviceId: 'reg-gen' } })
    expect(second.body.generationId).not.toBe(first.body.generationId)
  })

  it('accepts given keys and ids with special characters', async () => {
    const key = Buffer.alloc(32, 7).toString('base64')
    const id = "dev.1-a_b:c=d@e$f'(g)!*%,"
    const r = await t.rest('PUT', `/devices/${encodeURIComponent(id)}${Q}`, { body: { deviceId: id, authentication: { symmetricKey: { primaryKey: key, secondaryKey: key } } } })
    expect(r.status).toBe(200)
    expect(r.body.deviceId).toBe(id)
    expect(r.body.authentication.symmetricKey.primaryKey).toBe(key)
  })

  it('rejects bad input with 400 and keeps nothing', async () => {
    expectHubError(await t.rest('PUT', `/devices/bad%23id${Q}`, { body: { deviceId: 'bad#id' } }), 400, 'ArgumentInvalid')
    expectHubError(await t.rest('PUT', `/devices/${'x'.repeat(129)}${Q}`, { body: {} }), 400, 'ArgumentInvalid')
    expectHubError(await t.rest('PUT', `/devices/reg-mismatch${Q}`, { body: { deviceId: 'other' } }), 400, 'ArgumentInvalid')
    expectHubError(await t.rest('PUT', `/devices/reg-badjson${Q}`, { raw: '{"deviceId":' }), 400, 'DeserializationError')
    expectHubError(await t.rest('PUT', `/devices/reg-badkey${Q}`, { body: { authentication: { symmetricKey: { primaryKey: 'c2hvcnQ=' } } } }), 400, 'ArgumentInvalid')
    expectHubError(await t.rest('PUT', `/devices/reg-badstatus${Q}`, { body: { status: 'paused' } }), 400, 'ArgumentInvalid')
    expectHubError(await t.rest('PUT', `/devices/reg-array${Q}`, { body: [1, 2] }), 400, 'ArgumentInvalid')
    for (const id of ['reg-mismatch', 'reg-badjson', 'reg-badkey', 'reg-badstatus', 'reg-array']) {
      expect((await t.rest('GET', `/devices/${id}${Q}`)).status).toBe(404)
    }
  })

  it('rejects an oversized body with 413', async () => {
    const r = await t.rest('PUT', `/devices/reg-big${Q}`, { raw: JSON.stringify({ deviceId: 'reg-big', statusReason: 'x'.repeat(2 * 1024 * 1024) }) })
    expect(r.status).toBe(413)
    expect((await t.rest('GET', `/devices/reg-big${Q}`)).status).toBe(404)
  })

  it('counts devices in /statistics/devices', async () => {
    const before = (await t.rest('GET', `/statistics/devices${Q}`)).body
    await t.createDevice('reg-stat-on')
    await t.createDevice('reg-stat-off', { status: 'disabled' })
    const after = (await t.rest('GET', `/statistics/devices${Q}`)).body
    expect(after.totalDeviceCount).toBe(before.totalDeviceCount + 2)
    expect(after.enabledDeviceCount).toBe(before.enabledDeviceCount + 1)
    expect(after.disabledDeviceCount).toBe(before.disabledDeviceCount + 1)
  })
})

describe('authorization', () => {
  it('checks the policy\'s rights per route', async () => {
    const read = t.serviceToken('registryRead')
    expect((await t.rest('GET', `/devices/${Q}`, { token: read })).status).toBe(200)
    expectHubError(await t.rest('PUT', `/devices/reg-ro${Q}`, { body: {}, token: read }), 401, 'IotHubUnauthorized')
    expect((await t.rest('PUT', `/devices/reg-rw${Q}`, { body: {}, token: t.serviceToken('registryReadWrite') })).status).toBe(200)
    expectHubError(await t.rest('GET', `/devices/${Q}`, { token: t.serviceToken('service') }), 401, 'IotHubUnauthorized')
    expectHubError(await t.rest('GET', `/devices/${Q}`, { token: t.serviceToken('device') }), 401, 'IotHubUnauthorized')
    expect((await t.rest('GET', `/statistics/service${Q}`, { token: t.serviceToken('service') })).status).toBe(200)
  })

  it('refuses missing, expired, forged and foreign tokens', async () => {
    expectHubError(await t.rest('GET', `/devices/${Q}`, { token: null }), 401, 'IotHubUnauthorized')
    const key = t.policyKey('iothubowner')
    expectHubError(await t.rest('GET', `/devices/${Q}`, { token: createSasToken('localhost', key, 'iothubowner', -400) }), 401, 'IotHubUnauthorized')
    // within Azure's 5-minute clock skew a just-expired token still works
    expect((await t.rest('GET', `/devices/${Q}`, { token: createSasToken('localhost', key, 'iothubowner', -60) })).status).toBe(200)
    expectHubError(await t.rest('GET', `/devices/${Q}`, { token: createSasToken('localhost', Buffer.alloc(32).toString('base64'), 'iothubowner') }), 401, 'IotHubUnauthorized')
    expectHubError(await t.rest('GET', `/devices/${Q}`, { token: createSasToken('otherhub.azure-devices.net', key, 'iothubowner') }), 401, 'IotHubUnauthorized')
    expectHubError(await t.rest('GET', `/devices/${Q}`, { token: createSasToken('localhost', key, 'nosuchpolicy') }), 401, 'IotHubUnauthorized')
    expectHubError(await t.rest('GET', `/devices/${Q}`, { token: 'Bearer abc' }), 401, 'IotHubUnauthorized')
    expectHubError(await t.rest('GET', `/devices/${Q}`, { token: 'SharedAccessSignature sr=localhost&sig=a&se=9999999999&skn=%E0%A4%A' }), 401, 'IotHubUnauthorized')
  })

  it('answers unknown routes and methods in Azure\'s format', async () => {
    expectHubError(await t.rest('GET', `/nothing/here${Q}`), 404, 'GenericNotFound')
    expectHubError(await t.rest('POST', `/devices/reg-1${Q}`, { body: {} }), 405, 'GenericMethodNotAllowed')
    expectHubError(await t.rest('GET', '/devices/?api-version=latest'), 400, 'InvalidProtocolVersion')
  })
})

describe('bulk items whose twin breaks the rules', () => {
  it('are refused whole: the identity is not created', async () => {
    const r = await t.rest('POST', `/devices${Q}`, { body: [
      { id: 'bulk-bad-tags', importMode: 'create', status: 'enabled', tags: { 'a b': 1 } },
      { id: 'bulk-bad-desired', importMode: 'create', status: 'enabled', properties: { desired: { $metadata: {}, $version: 3, big: 'x'.repeat(5000) } } },
      { id: 'bulk-good', importMode: 'create', status: 'enabled', properties: { desired: { $metadata: {}, $version: 3, ok: 1 } } },
    ] })
    expect(r.body.errors.map((e: any) => [e.deviceId, e.errorCode])).toEqual([['bulk-bad-tags', 'ArgumentInvalid'], ['bulk-bad-desired', 'ArgumentInvalid']])
    expect([(await t.rest('GET', `/devices/bulk-bad-tags${Q}`)).status, (await t.rest('GET', `/devices/bulk-bad-desired${Q}`)).status, (await t.rest('GET', `/devices/bulk-good${Q}`)).status]).toEqual([404, 404, 200])
  })
})
