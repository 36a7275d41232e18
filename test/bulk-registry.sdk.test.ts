// Issue 18 item 2: bulk registry operations, `POST /devices`, with azure-iothub's Registry.addDevices,
// updateDevices and removeDevices and with raw REST for the modes the SDK does not send. Each item
// succeeds or is reported with Azure's error code; the others go on. Whole-request errors are exact.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Registry } from 'azure-iothub'
import { startTestHub, type TestHub } from './helpers/test-hub.js'

let t: TestHub
let registry: Registry
beforeAll(async () => {
  if (!process.env.NODE_EXTRA_CA_CERTS) throw new Error('run through `npm test`: the SDKs need NODE_EXTRA_CA_CERTS set at process start')
  t = await startTestHub({ mqttPort: 8883, httpsPort: 443, mqttTcpPort: null, amqpPort: 5671 })
  registry = Registry.fromConnectionString(`HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=${t.policyKey('iothubowner')}`)
})
afterAll(async () => { await t?.stop() })

const errorOf = (r: { status: number; body: any }) => ({ status: r.status, message: r.body?.Message?.replace(/^ErrorCode:\w+;/, '') })

describe('bulk registry operations', () => {
  it('Registry.addDevices creates devices and reports the one that exists, with its code', async () => {
    await t.createDevice('bulk-exists')
    const result = (await registry.addDevices([{ deviceId: 'bulk-a' }, { deviceId: 'bulk-exists' }, { deviceId: 'bulk-b', status: 'disabled' }])).responseBody
    expect(result).toEqual({
      isSuccessful: false, warnings: [],
      errors: [{ deviceId: 'bulk-exists', errorCode: 'DeviceAlreadyExists', errorStatus: "A device with ID 'bulk-exists' is already registered." }],
    })
    expect((await registry.get('bulk-a')).responseBody.authentication?.symmetricKey?.primaryKey).toMatch(/^[A-Za-z0-9+/]{43}=$/)
    expect((await registry.get('bulk-b')).responseBody.status).toBe('disabled')
  })

  it('Registry.updateDevices with and without force, and removeDevices, report stale etags and missing devices', async () => {
    const a = (await registry.get('bulk-a')).responseBody
    const stale = { deviceId: 'bulk-a', etag: a.etag, status: 'disabled' as const }
    // forced: no etag check
    expect((await registry.updateDevices([{ deviceId: 'bulk-a', status: 'disabled' }], true)).responseBody).toEqual({ isSuccessful: true, errors: [], warnings: [] })
    // not forced, with the etag from before that update
    const r = (await registry.updateDevices([stale, { deviceId: 'bulk-nobody', etag: 'AAA=', status: 'enabled' }], false)).responseBody
    expect(r.errors).toEqual([
      { deviceId: 'bulk-a', errorCode: 'PreconditionFailed', errorStatus: expect.any(String) },
      { deviceId: 'bulk-nobody', errorCode: 'DeviceNotFound', errorStatus: 'Device bulk-nobody not registered' },
    ])
    const removed = (await registry.removeDevices([{ deviceId: 'bulk-a' }, { deviceId: 'bulk-nobody' }], true)).responseBody
    expect(removed.errors).toEqual([{ deviceId: 'bulk-nobody', errorCode: 'DeviceNotFound', errorStatus: 'Device bulk-nobody not registered' }])
    expect((await t.rest('GET', '/devices/bulk-a')).status).toBe(404)
  })

  it('creates with tags and desired properties, and updates a twin by its etag (raw REST: modes the SDK does not send)', async () => {
    const r = await t.rest('POST', '/devices?api-version=2021-04-12', { body: [{ id: 'bulk-twin', importMode: 'create', status: 'enabled', tags: { site: 'a' }, properties: { desired: { rate: 1 } } }] })
    expect(r.body).toEqual({ isSuccessful: true, errors: [], warnings: [] })
    const twin = (await t.rest('GET', '/twins/bulk-twin')).body
    expect([twin.tags, twin.properties.desired.rate]).toEqual([{ site: 'a' }, 1])
    const updates = await t.rest('POST', '/devices?api-version=2021-04-12', { body: [
      { id: 'bulk-twin', importMode: 'updateTwinIfMatchETag', twinETag: twin.etag, tags: { site: 'b' } },
      { id: 'bulk-twin-nobody', importMode: 'updateTwin', tags: { site: 'c' } },
      { id: 'bulk-odd', importMode: 'replaceEverything' },
    ] })
    expect(updates.body.errors).toEqual([
      { deviceId: 'bulk-twin-nobody', errorCode: 'DeviceNotFound', errorStatus: 'Device bulk-twin-nobody not registered' },
      { deviceId: 'bulk-odd', errorCode: 'ArgumentInvalid', errorStatus: expect.stringMatching(/^importMode "replaceEverything" is not one of create, createOrUpdate, /) },
    ])
    expect((await t.rest('GET', '/twins/bulk-twin')).body.tags).toEqual({ site: 'b' })
    // the same twin etag again is stale now
    const stale = await t.rest('POST', '/devices?api-version=2021-04-12', { body: [{ id: 'bulk-twin', importMode: 'updateTwinIfMatchETag', twinETag: twin.etag, tags: { site: 'z' } }] })
    expect(stale.body.errors.map((e: { errorCode: string }) => e.errorCode)).toEqual(['PreconditionFailed'])
  })

  it('refuses a malformed request as a whole, with Azure\'s codes, and changes nothing', async () => {
    const before = (await t.rest('GET', '/statistics/devices')).body.totalDeviceCount
    const post = (body: unknown) => t.rest('POST', '/devices?api-version=2021-04-12', { body }).then(errorOf)
    expect(await post(Array.from({ length: 101 }, (_, i) => ({ id: `bulk-many-${i}` })))).toEqual({ status: 413, message: 'at most 100 devices per bulk operation (got 101)' })
    expect(await post([{ id: 'bulk-twice' }, { id: 'bulk-twice' }])).toEqual({ status: 400, message: "device 'bulk-twice' is defined more than once" })
    expect(await post({ id: 'bulk-not-a-list' })).toEqual({ status: 400, message: 'the body must be an array of devices' })
    expect(await post([])).toEqual({ status: 400, message: 'the body must name at least one device' })
    expect(await post([{ deviceId: 'bulk-no-id' }])).toEqual({ status: 400, message: 'every item needs an "id"' })
    expect((await t.rest('GET', '/statistics/devices')).body.totalDeviceCount).toBe(before)
  })
})
