// Issue 10 items 10 and 11: input that used to take the hub down or answer 500. A twin body nested
// 5,000 levels deep overflowed the stack when packed for the shard; a too-deep method payload or
// device answer overflowed JSON.stringify; 150 queries at once answered 500. Each now gets Azure's
// error (400 ArgumentInvalid, 429 ThrottlingException) and the hub goes on serving.
import type mqttPacket from 'mqtt-packet'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { jsonDeeperThan, MAX_JSON_DEPTH } from '../src/json-depth.js'
import { MAX_QUEUED_QUERIES } from '../src/query/query-pool.js'
import { PresenceSnapshots } from '../src/query/presence-snapshot.js'
import { NEVER } from '../src/registry/device-registry.js'
import { MAX_TOPIC_BYTES, publish } from '../src/mqtt/packets.js'
import { formatPropertyBag } from '../src/mqtt/property-bag.js'
import { MAX_TOKEN_LENGTH, parseSasToken } from '../src/auth/sas-token.js'
import { SasVerifierCache } from '../src/wasm/sas-verifier-cache.js'
import { startTestHub, type TestHub } from './helpers/test-hub.js'
import { connectDevice, nextPublish } from './helpers/device-mqtt.js'

let t: TestHub
beforeAll(async () => { t = await startTestHub({ shards: 2 }) })
afterAll(async () => { await t.stop() })

const nested = (depth: number) => '{"a":'.repeat(depth) + '1' + '}'.repeat(depth)
const deepArray = (depth: number) => '['.repeat(depth) + ']'.repeat(depth)

function expectError(r: { status: number; body: any; headers: Record<string, unknown> }, status: number, code: string, text: string): void {
  expect(r.status).toBe(status)
  expect(r.headers['iothub-errorcode']).toBe(code)
  expect(r.body.Message).toBe(`ErrorCode:${code};${text}`)
}

describe('nesting', () => {
  it('counts depth without recursing, skipping strings', () => {
    expect(jsonDeeperThan(nested(MAX_JSON_DEPTH))).toBe(false)
    expect(jsonDeeperThan(nested(MAX_JSON_DEPTH + 1))).toBe(true)
    expect(jsonDeeperThan(Buffer.from(deepArray(1_000_000)))).toBe(true)
    expect(jsonDeeperThan(`{"s":"${'['.repeat(200)}\\"${'{'.repeat(200)}"}`)).toBe(false)
  })

  it('refuses a twin PATCH and PUT nested 5,000 deep with 400, and keeps serving', async () => {
    await t.createDevice('deep-twin')
    const body = `{"properties":{"desired":${nested(5000)}}}`
    for (const method of ['PATCH', 'PUT']) {
      const r = await t.rest(method, '/twins/deep-twin?api-version=2021-04-12', { raw: body })
      expectError(r, 400, 'ArgumentInvalid', `the request body nests deeper than ${MAX_JSON_DEPTH} levels`)
    }
    const ok = await t.rest('PATCH', '/twins/deep-twin?api-version=2021-04-12', { body: { properties: { desired: { fine: 1 } } } })
    expect(ok.status).toBe(200)
    expect(ok.body.properties.desired.fine).toBe(1)
  })

  it('refuses a body with a __proto__ key, however it is spelled (msgpackr renamed it to __proto_ past the twin rules)', async () => {
    await t.createDevice('proto-twin')
    for (const raw of ['{"tags":{"site":"a","__proto__":{"x":1}}}', '{"tags":{"\\u005f\\u005fproto\\u005f\\u005f":1}}', '{"properties":{"desired":{"a":[{"__proto__":1}]}}}', '{"tags":{"\\u005f\\u005f\\u0070\\u0072\\u006f\\u0074\\u006f\\u005f\\u005f":{"x":1}}}']) {
      const r = await t.rest('PATCH', '/twins/proto-twin?api-version=2021-04-12', { raw })
      expectError(r, 400, 'ArgumentInvalid', 'the property name __proto__ is not supported')
    }
    const twin = await t.rest('GET', '/twins/proto-twin?api-version=2021-04-12')
    expect([twin.body.tags, twin.body.properties.desired.$version]).toEqual([undefined, 1])
    // a value that only mentions it is fine
    expect((await t.rest('PATCH', '/twins/proto-twin?api-version=2021-04-12', { body: { tags: { note: '__proto__' } } })).status).toBe(200)
  })

  it('refuses a method payload nested too deep with 400', async () => {
    const r = await t.rest('POST', '/twins/deep-twin/methods?api-version=2021-04-12', { raw: `{"methodName":"m","payload":${deepArray(5000)}}` })
    expectError(r, 400, 'ArgumentInvalid', `the request body nests deeper than ${MAX_JSON_DEPTH} levels`)
  })

  it('answers 400 when the device answers a method with JSON nested too deep', async () => {
    const c = await connectDevice(t, 'deep-answer')
    await c.subscribe('$iothub/methods/POST/#', 0)
    const request = nextPublish(c, '$iothub/methods/POST/')
    const call = t.rest('POST', '/twins/deep-answer/methods?api-version=2021-04-12', { body: { methodName: 'm', responseTimeoutInSeconds: 10 } })
    const rid = /\?\$rid=(.+)$/.exec((await request).topic)![1]!
    c.send({ cmd: 'publish', topic: `$iothub/methods/res/200/?$rid=${rid}`, payload: Buffer.from(deepArray(20_000)), qos: 0, retain: false, dup: false } as mqttPacket.IPublishPacket)
    expectError(await call, 400, 'ArgumentInvalid', `the device's response nests deeper than ${MAX_JSON_DEPTH} levels`)
    await c.disconnect()
  })
})

describe('what a device or back end names', () => {
  it('closes a device whose twin $rid would make an answer topic MQTT cannot carry, and only that device', async () => {
    const bystander = await connectDevice(t, 'rid-bystander')
    const c = await connectDevice(t, 'rid-long')
    await c.subscribe('$iothub/twin/res/#', 0)
    c.send({ cmd: 'publish', topic: `$iothub/twin/GET/?$rid=${' '.repeat(30_000)}`, payload: Buffer.alloc(0), qos: 0, retain: false, dup: false } as mqttPacket.IPublishPacket)
    await c.closed
    // the hub lives on, and so does the other device
    const pong = bystander.next('pingresp')
    bystander.send({ cmd: 'pingreq' })
    await pong
    await bystander.disconnect()
  })

  it('refuses to encode a PUBLISH whose topic is longer than 65,535 bytes', () => {
    expect(() => publish('x'.repeat(MAX_TOPIC_BYTES + 1), Buffer.alloc(0), 0, 0, false)).toThrow(`a topic of ${MAX_TOPIC_BYTES + 1} bytes does not fit in a PUBLISH`)
    expect(publish('x'.repeat(MAX_TOPIC_BYTES), Buffer.alloc(0), 0, 0, false).length).toBeGreaterThan(MAX_TOPIC_BYTES)
  })

  it('refuses a C2D message whose properties would not fit in an MQTT topic', async () => {
    await t.createDevice('c2d-wide')
    // within the 64 KB size, but the topic (`devices/{id}/messages/devicebound/` + the encoded bag) is just over 65,535 bytes
    const prefix = 'devices/c2d-wide/messages/devicebound/'
    const bagFor = (n: number) => formatPropertyBag({ '$.to': '/devices/c2d-wide/messages/devicebound', wide: '/'.repeat(n) })
    let n = 1
    while (prefix.length + bagFor(n).length <= MAX_TOPIC_BYTES) n++
    expect(bagFor(n).length + 1).toBeLessThanOrEqual(64 * 1024)
    const r = await t.rest('POST', '/devices/c2d-wide/messages/deviceBound?api-version=2021-04-12', { raw: 'x', headers: { 'iothub-app-wide': '/'.repeat(n) } })
    expectError(r, 400, 'ArgumentInvalid', `the message's properties take ${prefix.length + bagFor(n).length} bytes in the MQTT topic; at most ${MAX_TOPIC_BYTES} fit`)
  })

  it('refuses SAS tokens with fields the signature does not cover, or too long, and caches one entry per token however it is spelled', () => {
    const good = t.serviceToken('service')
    expect(() => parseSasToken(`${good}&x1=${'a'.repeat(100)}`)).toThrow('unexpected token field "x1"')
    expect(() => parseSasToken(`SharedAccessSignature ${'sr=a&'.repeat(1000)}`)).toThrow(`token longer than ${MAX_TOKEN_LENGTH} characters`)
    // base64 decoding skips junk, so a padded signature would still verify, as a new cache entry each time
    const sig = /sig=([^&]+)/.exec(good)![1]!
    const plain = decodeURIComponent(sig)
    // the last character's two unused bits: four spellings would decode to the same bytes
    const unusedBits = `${plain.slice(0, 42)}${String.fromCharCode(plain.charCodeAt(42) + 1)}=`
    for (const padded of [`${sig}${encodeURIComponent('一'.repeat(50))}`, `${sig}!!!!`, `!${sig}`, sig.replace(/%3D$/, ''), `${sig}%3D`, encodeURIComponent(unusedBits)]) {
      expect(() => parseSasToken(good.replace(sig, padded))).toThrow('sig must be the base64 of an HMAC-SHA256 (44 characters)')
    }
    expect(parseSasToken(good).signature).toMatch(/^[A-Za-z0-9+/]{43}=$/)
    const cache = new SasVerifierCache(100, () => {})
    const fields = good.replace('SharedAccessSignature ', '').split('&')
    cache.verify(good, ['k'])
    cache.verify(`SharedAccessSignature    ${fields.join('&')}`, ['k'])
    cache.verify(`SharedAccessSignature ${[...fields].reverse().join('&')}`, ['k'])
    expect(cache.size).toBe(1)
  })

  it('refuses a start position past any sequence number', async () => {
    const r = await t.rest('GET', '/messages/events/partitions/0/events?fromSequenceNumber=1e300')
    expectError(r, 400, 'ArgumentInvalid', 'fromSequenceNumber must be a non-negative integer')
  })
})

describe('queries', () => {
  it(`answers 429 ThrottlingException past ${MAX_QUEUED_QUERIES} waiting queries, never 500, and serves again after`, async () => {
    const results = await Promise.all(Array.from({ length: 150 }, () => t.rest('POST', '/devices/query?api-version=2021-04-12', { body: { query: 'SELECT * FROM devices' } })))
    const statuses = results.map((r) => r.status)
    expect(statuses.filter((s) => s !== 200 && s !== 429)).toEqual([])
    const throttled = results.filter((r) => r.status === 429)
    expect(throttled.length).toBeGreaterThan(0)
    for (const r of throttled) expectError(r, 429, 'ThrottlingException', `more than ${MAX_QUEUED_QUERIES} queries are waiting; retry later`)
    expect((await t.rest('POST', '/devices/query?api-version=2021-04-12', { body: { query: 'SELECT * FROM devices' } })).status).toBe(200)
  })

  it('copies presence facts a chunk per event-loop turn, and shares one copy among the queries that arrived before it began', async () => {
    const ids = Array.from({ length: 10_000 }, (_, i) => `p-${i}`)
    let reads = 0
    const source = {
      *presentDeviceIds() { yield* ids },
      connectionState: () => { reads++; return { connected: true, since: NEVER } },
      lastActivityTime: () => NEVER,
      cloudToDeviceMessageCount: () => 0,
    }
    const snapshots = new PresenceSnapshots(source, 1000)
    const first = snapshots.take()
    const joined = snapshots.take()
    // a turn in the middle of the copy: some devices were read, not all
    let midway = -1
    setImmediate(() => setImmediate(() => { midway = reads }))
    const [a, b] = await Promise.all([first, joined])
    expect(a).toBe(b)
    expect(reads).toBe(ids.length)
    expect(midway).toBeGreaterThan(0)
    expect(midway).toBeLessThan(ids.length)
    expect(a.chunks).toHaveLength(10)
    // a query that comes after the copy began gets a newer one
    expect(await snapshots.take()).not.toBe(a)
  })
})
