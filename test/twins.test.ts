// Device twins over raw MQTT and the service REST API: documents, versions, metadata, etags, limits,
// desired-property pushes, and the twin's life with its device. Runs with 2 shards.
import type mqttPacket from 'mqtt-packet'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestHub, type TestHub } from './helpers/test-hub.js'
import { connectDevice, nextPublish, twinRequest } from './helpers/device-mqtt.js'

let t: TestHub
beforeAll(async () => { t = await startTestHub({ shards: 2 }) })
afterAll(async () => { await t.stop() })

const twinPath = (id: string) => `/twins/${id}?api-version=2021-04-12`

describe('service twin REST', () => {
  it('creates a twin with the device, with identity fields, versions and metadata', async () => {
    await t.createDevice('tw-new')
    const r = await t.rest('GET', twinPath('tw-new'))
    expect(r.status).toBe(200)
    expect(r.headers.etag).toBe(`"${r.body.etag}"`)
    expect(r.body).toMatchObject({
      deviceId: 'tw-new', deviceEtag: t.hub.registry.get('tw-new')!.etag, status: 'enabled', connectionState: 'Disconnected',
      authenticationType: 'sas', cloudToDeviceMessageCount: 0, version: 1, capabilities: { iotEdge: false },
      x509Thumbprint: { primaryThumbprint: null, secondaryThumbprint: null },
      properties: { desired: { $version: 1 }, reported: { $version: 1 } },
    })
    expect(r.body.tags).toBeUndefined()
    expect(r.body.properties.desired.$metadata.$lastUpdated).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$/)
    expect(Buffer.from(r.body.etag, 'base64')).toHaveLength(8)
  })

  it('merges PATCHes (null deletes) and replaces with PUT, checking If-Match', async () => {
    await t.createDevice('tw-patch')
    const first = (await t.rest('GET', twinPath('tw-patch'))).body
    const patched = await t.rest('PATCH', twinPath('tw-patch'), {
      body: { tags: { site: 'A', floor: { n: 1 } }, properties: { desired: { rate: 5, nested: { a: 1, b: 2 } } } }, headers: { 'If-Match': `"${first.etag}"` },
    })
    expect(patched.status).toBe(200)
    expect(patched.body.version).toBe(2)
    expect(patched.body.etag).not.toBe(first.etag)
    expect(patched.body.tags).toEqual({ site: 'A', floor: { n: 1 } })
    const desired = patched.body.properties.desired
    expect(desired).toMatchObject({ rate: 5, nested: { a: 1, b: 2 }, $version: 2 })
    expect(desired.$metadata.rate.$lastUpdatedVersion).toBe(2)
    expect(desired.$metadata.nested.b.$lastUpdatedVersion).toBe(2)

    const stale = await t.rest('PATCH', twinPath('tw-patch'), { body: { tags: { site: 'B' } }, headers: { 'If-Match': `"${first.etag}"` } })
    expect(stale.status).toBe(412)
    expect(stale.body.Message).toMatch(/^ErrorCode:PreconditionFailed;/)
    expect(stale.headers['iothub-errorcode']).toBe('PreconditionFailed')

    const removed = await t.rest('PATCH', twinPath('tw-patch'), { body: { tags: { floor: null }, properties: { desired: { nested: { a: null } } } }, headers: { 'If-Match': '"*"' } })
    expect(removed.body.tags).toEqual({ site: 'A' })
    expect(removed.body.properties.desired).toMatchObject({ rate: 5, nested: { b: 2 }, $version: 3 })
    expect(removed.body.properties.desired.nested.a).toBeUndefined()
    expect(removed.body.properties.desired.$metadata.nested.a).toBeUndefined()

    const replaced = await t.rest('PUT', twinPath('tw-patch'), { body: { tags: { only: true }, properties: { desired: { x: 'y' } } } })
    expect(replaced.status).toBe(200)
    expect(replaced.body.tags).toEqual({ only: true })
    const { $metadata, ...rest } = replaced.body.properties.desired
    expect(rest).toEqual({ x: 'y', $version: 4 })
    expect($metadata.x.$lastUpdatedVersion).toBe(4)
  })

  it('refuses what Azure refuses, with Azure\'s error codes, and changes nothing', async () => {
    await t.createDevice('tw-bad')
    const before = (await t.rest('GET', twinPath('tw-bad'))).body
    const cases: [unknown, number, string][] = [
      [{ tags: { big: 'x'.repeat(4000), big2: 'x'.repeat(4000), big3: 'x'.repeat(400) } }, 400, 'ArgumentInvalid'],
      [{ properties: { desired: Object.fromEntries(Array.from({ length: 9 }, (_, i) => [`k${i}`, 'v'.repeat(4000)])) } }, 400, 'ArgumentInvalid'],
      [{ tags: JSON.parse('{"a":'.repeat(12) + '1' + '}'.repeat(12)) }, 400, 'ArgumentInvalid'],
      [{ tags: { 'has.dot': 1 } }, 400, 'ArgumentInvalid'],
      [{ tags: { 'has space': 1 } }, 400, 'ArgumentInvalid'],
      [{ tags: { $reserved: 1 } }, 400, 'ArgumentInvalid'],
      [{ properties: { desired: { s: 'x'.repeat(4097) } } }, 400, 'ArgumentInvalid'],
      [{ properties: { desired: { n: 2 ** 53 } } }, 400, 'ArgumentInvalid'],
      [[1, 2], 400, 'ArgumentInvalid'],
    ]
    for (const [body, status, code] of cases) {
      const r = await t.rest('PATCH', twinPath('tw-bad'), { body, headers: { 'If-Match': '"*"' } })
      expect(r.status, JSON.stringify(body).slice(0, 80)).toBe(status)
      expect(r.body.Message).toMatch(new RegExp(`^ErrorCode:${code};`))
    }
    // ten levels of objects inside tags (tags.a1...a10.property) is allowed
    const deep = await t.rest('PATCH', twinPath('tw-bad'), { body: { tags: JSON.parse('{"a":'.repeat(11) + '1' + '}'.repeat(11)) } })
    expect(deep.status).toBe(200)
    const malformed = await t.rest('PATCH', twinPath('tw-bad'), { raw: '{"tags":', headers: { 'Content-Type': 'application/json' } })
    expect(malformed.status).toBe(400)
    expect(malformed.body.Message).toMatch(/^ErrorCode:DeserializationError;/)
    const after = (await t.rest('GET', twinPath('tw-bad'))).body
    expect(after.version).toBe(before.version + 1)
    const unknown = await t.rest('GET', twinPath('tw-nobody'))
    expect(unknown.status).toBe(404)
    expect(unknown.body.Message).toMatch(/^ErrorCode:DeviceNotFound;/)
  })

  it('is deleted with its device; a device created again under the id starts fresh', async () => {
    await t.createDevice('tw-life')
    await t.rest('PATCH', twinPath('tw-life'), { body: { tags: { keep: 'no' } } })
    expect((await t.rest('DELETE', '/devices/tw-life', { headers: { 'If-Match': '"*"' } })).status).toBe(204)
    expect((await t.rest('GET', twinPath('tw-life'))).status).toBe(404)
    await t.createDevice('tw-life')
    const r = await t.rest('GET', twinPath('tw-life'))
    expect(r.body.version).toBe(1)
    expect(r.body.tags).toBeUndefined()
  })

  it('needs ServiceConnect', async () => {
    await t.createDevice('tw-auth')
    const r = await t.rest('GET', twinPath('tw-auth'), { token: t.serviceToken('registryRead') })
    expect(r.status).toBe(401)
  })
})

describe('device twin over MQTT', () => {
  it('reads, reports and receives desired patches; errors carry errorCode', async () => {
    const c = await connectDevice(t, 'tw-dev')
    await c.subscribe('$iothub/twin/res/#', 0)
    await c.subscribe('$iothub/twin/PATCH/properties/desired/#', 0)
    const got = await twinRequest(c, '$iothub/twin/GET/?$rid=1', ' ', '1')
    expect(got.status).toBe(200)
    expect(got.body).toEqual({ desired: { $version: 1 }, reported: { $version: 1 } })

    const rep = await twinRequest(c, '$iothub/twin/PATCH/properties/reported/?$rid=2', JSON.stringify({ temp: 21, fw: { v: '1.0' } }), '2')
    expect(rep.status).toBe(204)
    expect(rep.topic).toBe('$iothub/twin/res/204/?$rid=2&$version=2')
    const svc = (await t.rest('GET', twinPath('tw-dev'))).body
    expect(svc.properties.reported).toMatchObject({ temp: 21, fw: { v: '1.0' }, $version: 2 })
    expect(svc.properties.reported.$metadata.fw.v.$lastUpdated).toBeDefined()
    expect(svc.connectionState).toBe('Connected')

    const pushed = nextPublish(c, '$iothub/twin/PATCH/properties/desired/')
    await t.rest('PATCH', twinPath('tw-dev'), { body: { properties: { desired: { rate: 10, old: null } } } })
    const p = await pushed
    expect(p.topic).toBe('$iothub/twin/PATCH/properties/desired/?$version=2')
    expect(JSON.parse(p.payload.toString())).toEqual({ rate: 10, old: null, $version: 2 })

    const bad = await twinRequest(c, '$iothub/twin/PATCH/properties/reported/?$rid=3', '{not json', '3')
    expect(bad.status).toBe(400)
    expect(bad.body).toMatchObject({ errorCode: 400012 })
    const big = await twinRequest(c, '$iothub/twin/PATCH/properties/reported/?$rid=4', JSON.stringify({ a: 'x'.repeat(4000), b: 'x'.repeat(4000), c: 'x'.repeat(4000), d: 'x'.repeat(4000), e: 'x'.repeat(4000), f: 'x'.repeat(4000), g: 'x'.repeat(4000), h: 'x'.repeat(4000), i: 'x'.repeat(1000) }), '4')
    expect(big.status).toBe(400)
    expect(big.body).toMatchObject({ errorCode: 400004 })
    const deep = await twinRequest(c, '$iothub/twin/PATCH/properties/reported/?$rid=5', '{"a":'.repeat(12) + '1' + '}'.repeat(12), '5')
    expect(deep.body).toMatchObject({ errorCode: 400004 })
    // the connection survived all of that
    const again = await twinRequest(c, '$iothub/twin/GET/?$rid=6', '', '6')
    expect(again.body).toEqual({ desired: { rate: 10, $version: 2 }, reported: { temp: 21, fw: { v: '1.0' }, $version: 2 } })
    await c.disconnect()
  })

  it('keeps pushing desired patches after a reconnect without re-subscribing (persistent session)', async () => {
    const c1 = await connectDevice(t, 'tw-persist')
    await c1.subscribe('$iothub/twin/PATCH/properties/desired/#', 0)
    await c1.disconnect()
    const c2 = await connectDevice(t, 'tw-persist')
    const pushed = nextPublish(c2, '$iothub/twin/PATCH/properties/desired/')
    await t.rest('PATCH', twinPath('tw-persist'), { body: { properties: { desired: { after: 'reconnect' } } } })
    expect(JSON.parse((await pushed).payload.toString())).toEqual({ after: 'reconnect', $version: 2 })
    // a device that is not subscribed gets nothing
    const other = await connectDevice(t, 'tw-nosub')
    await other.subscribe('$iothub/twin/res/#', 0)
    await t.rest('PATCH', twinPath('tw-nosub'), { body: { properties: { desired: { x: 1 } } } })
    // a twin GET answered after the PATCH is a marker: the shard would have pushed the patch first
    await twinRequest(other, '$iothub/twin/GET/?$rid=marker', '', 'marker')
    expect(other.packets.filter((p) => p.cmd === 'publish').map((p) => (p as mqttPacket.IPublishPacket).topic)).toEqual([expect.stringMatching(/^\$iothub\/twin\/res\/200\/\?\$rid=marker/)])
    await c2.disconnect()
    await other.disconnect()
  })

  it('closes a connection that publishes to an unknown $iothub topic, and only that one', async () => {
    const a = await connectDevice(t, 'tw-rogue')
    const b = await connectDevice(t, 'tw-bystander')
    await b.subscribe('$iothub/twin/res/#', 0)
    a.send({ cmd: 'publish', topic: '$iothub/twin/DELETE/?$rid=1', payload: Buffer.alloc(0), qos: 0, retain: false, dup: false } as never)
    await a.closed
    expect((await twinRequest(b, '$iothub/twin/GET/?$rid=9', '', '9')).status).toBe(200)
    await b.disconnect()
  })
})
