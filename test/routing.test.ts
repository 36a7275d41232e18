// Message routing end to end over real sockets: routes, endpoints and enrichments managed over REST;
// telemetry routed to a log endpoint, a storage endpoint and a webhook; the fallback route;
// enrichments; twin change, lifecycle and connection state events; persistence across a restart;
// Azure-style errors for bad input. Runs with 2 shards.
import http from 'node:http'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestHub, tempDir, type TestHub } from './helpers/test-hub.js'
import { connectDevice, sleep, until } from './helpers/device-mqtt.js'
import { eventsOf, readAllEvents, type ReadEvent } from './helpers/events.js'
import { outboxEventCounts, outboxNames } from './helpers/outbox-inspect.js'
import { routedBlobs, routedLines } from './helpers/routed-blobs.js'
import { MqttTestClient } from './helpers/mqtt-test-client.js'
import { createSasToken } from '../src/auth/sas-token.js'

let t: TestHub
const hooked: { body: any[]; status: number }[] = []
let failNext = 0
let hookServer: http.Server
let hookUrl = ''

beforeAll(async () => {
  hookServer = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const status = failNext > 0 ? (failNext--, 500) : 200
      hooked.push({ body: JSON.parse(Buffer.concat(chunks).toString('utf8')), status })
      res.writeHead(status).end()
    })
  })
  await new Promise<void>((r) => hookServer.listen(0, '127.0.0.1', r))
  hookUrl = `http://127.0.0.1:${(hookServer.address() as { port: number }).port}/hook`
  t = await startTestHub({ shards: 2 })
})
afterAll(async () => {
  await t?.stop()
  hookServer?.close()
})

const base64 = (s: string) => Buffer.from(s).toString('base64')

async function readLog(hub: TestHub, name: string): Promise<ReadEvent[]> {
  const out: ReadEvent[] = []
  for (let p = 0; p < 4; p++) {
    const r = await hub.rest('GET', `/messages/endpoints/${name}/partitions/${p}/events?from=earliest&maxCount=1000`)
    if (r.status !== 200) throw new Error(`read ${name}/${p}: ${r.status} ${r.text}`)
    out.push(...r.body.events)
  }
  return out
}

function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return []
  return readdirSync(dir).flatMap((f) => {
    const path = join(dir, f)
    return statSync(path).isDirectory() ? filesUnder(path) : [path]
  })
}

describe('routing configuration over REST', () => {
  it('refuses bad input with Azure-style errors and changes nothing', async () => {
    const bad = async (method: string, path: string, body: unknown, pattern: RegExp) => {
      const r = await t.rest(method, path, { body })
      expect(r.status, r.text).toBe(400)
      expect(r.headers['iothub-errorcode']).toBe('ArgumentInvalid')
      expect(r.body.Message).toMatch(/^ErrorCode:ArgumentInvalid;/)
      expect(r.body.Message).toMatch(pattern)
    }
    await bad('PUT', '/routing/routes/r1', { condition: "level = 'hot' AND", endpointNames: ['events'] }, /line 1, column \d+/)
    await bad('PUT', '/routing/routes/r1', { condition: 'true', endpointNames: ['nowhere'] }, /endpoint nowhere does not exist/)
    await bad('PUT', '/routing/routes/r1', { source: 'Telemetry', endpointNames: ['events'] }, /source must be one of/)
    await bad('PUT', '/routing/routes/bad%20name', { endpointNames: ['events'] }, /route name/)
    const routes = Array.from({ length: 101 }, (_, i) => ({ name: `r${i}`, condition: 'true', endpointNames: ['events'] }))
    await bad('PUT', '/routing', { routes }, /at most 100 routes/)
    // Azure's 10 custom endpoints are 10 in all, not 10 of each type (issue 12)
    const logs = Array.from({ length: 6 }, (_, i) => ({ name: `l${i}` }))
    const webhooks = Array.from({ length: 5 }, (_, i) => ({ name: `w${i}`, url: 'http://127.0.0.1:9/' }))
    await bad('PUT', '/routing', { endpoints: { logs, webhooks } }, /at most 10 custom endpoints in all \(got 11\)/)
    const enrichments = Array.from({ length: 11 }, (_, i) => ({ key: `k${i}`, value: 'v', endpointNames: ['events'] }))
    await bad('PUT', '/routing', { enrichments }, /at most 10 enrichments/)
    await bad('PUT', '/routing/endpoints/logs/events', {}, /reserved/)
    await bad('PUT', '/routing/endpoints/storageContainers/s', { fileNameFormat: '{iothub}/{partition}' }, /fileNameFormat/)
    // one writer per container, and an encoding fixed at creation (blobs cannot mix them)
    await bad('PUT', '/routing', { endpoints: { storageContainers: [{ name: 'My_Store' }, { name: 'my-store' }] } }, /storage endpoints My_Store and my-store both write to container my-store; give one another containerName/)
    expect((await t.rest('PUT', '/routing/endpoints/storageContainers/fixedenc', { body: { encoding: 'JSON' } })).status).toBe(200)
    await bad('PUT', '/routing/endpoints/storageContainers/fixedenc', { encoding: 'avro' }, /storage endpoint fixedenc writes JSON; its encoding cannot change \(create another endpoint\)/)
    expect((await t.rest('DELETE', '/routing/endpoints/storageContainers/fixedenc')).status).toBe(204)
    // routing is hub configuration: only the owner policy reads or changes it (every route and policy: rights-matrix.test.ts)
    const refused = await t.rest('PUT', '/routing/routes/r1', { body: { endpointNames: ['events'] }, token: t.serviceToken('registryReadWrite') })
    expect(refused.status).toBe(401)
    expect(refused.body.Message).toBe("ErrorCode:IotHubUnauthorized;Authorization rule 'registryReadWrite' does not allow access for 'ControlPlane' (hub configuration needs the iothubowner policy)")
    expect((await t.rest('GET', '/routing/routes', { token: t.serviceToken('service') })).status).toBe(401)
    expect((await t.rest('GET', '/routing')).body).toMatchObject({ routes: [], fallbackRoute: { isEnabled: true } })
    expect((await t.rest('GET', '/routing/routes/r1')).status).toBe(404)
    expect((await t.rest('GET', '/messages/endpoints/nope/partitions')).status).toBe(404)
  })
})

describe('routed telemetry', () => {
  it('sends matching messages to a log endpoint, a storage endpoint and a webhook; the rest follows the fallback; enrichments appear', async () => {
    const ok = async (method: string, path: string, body?: unknown) => {
      const r = await t.rest(method, path, { body })
      expect(r.status, r.text).toBeLessThan(300)
      return r.body
    }
    await ok('PUT', '/routing/endpoints/logs/hot', {})
    await ok('PUT', '/routing/endpoints/storageContainers/archive', { batchFrequencyInSeconds: 1, encoding: 'JSON' })
    await ok('PUT', '/routing/endpoints/webhooks/hook', { url: hookUrl, maxDeliveryAttempts: 3 })
    await ok('PUT', '/routing/routes/to-hot', { condition: "level = 'hot'", endpointNames: ['hot'] })
    // a second matching route to the same endpoint: still delivered once
    await ok('PUT', '/routing/routes/to-hot-too', { condition: "$connectionDeviceId = 'rt-dev' AND level = 'hot'", endpointNames: ['hot'] })
    await ok('PUT', '/routing/routes/to-archive', { condition: '$body.temp > 30', endpointNames: ['archive'] })
    await ok('PUT', '/routing/routes/to-hook', { condition: "level = 'hook'", endpointNames: ['hook'] })
    await ok('PUT', '/routing/routes/twin-site', { condition: "$twin.tags.site = 'lab' AND level = 'site'", endpointNames: ['hot'] })
    await ok('PUT', '/routing/enrichments/site', { value: '$twin.tags.site', endpointNames: ['events', 'hot'] })
    await ok('PUT', '/routing/enrichments/hub', { value: '$iothubname', endpointNames: ['hot'] })
    await ok('PUT', '/routing/enrichments/missing', { value: '$twin.tags.nothere', endpointNames: ['hot'] })
    await ok('PUT', '/routing/enrichments/fixed', { value: 'v1', endpointNames: ['hook'] })
    const r = await t.rest('DELETE', '/routing/endpoints/logs/hot')
    expect(r.status).toBe(400) // still in use
    // the refusal says who still uses it (issue 12)
    expect(r.body.Message).toBe('ErrorCode:ArgumentInvalid;endpoint hot is still used by route to-hot, route to-hot-too, route twin-site, enrichment site, enrichment hub, enrichment missing; remove it from them first')

    await t.createDevice('rt-dev')
    await ok('PATCH', '/twins/rt-dev', { tags: { site: 'lab' } })
    const dev = await connectDevice(t, 'rt-dev')
    const topic = 'devices/rt-dev/messages/events/'
    await dev.publish(`${topic}level=hot`, 'h1')
    await dev.publish(`${topic}$.ct=application%2Fjson&$.ce=utf-8&kind=reading`, JSON.stringify({ temp: 35 }))
    await dev.publish(`${topic}$.ct=application%2Fjson&$.ce=utf-8&kind=reading`, JSON.stringify({ temp: 20 }))
    await dev.publish(`${topic}level=hook&$.mid=m-hook`, 'w1')
    await dev.publish(`${topic}level=site`, 's1')
    await dev.disconnect()

    const hot = eventsOf(await readLog(t, 'hot'), 'rt-dev')
    expect(hot.map((e) => Buffer.from(e.body, 'base64').toString())).toEqual(['h1', 's1'])
    expect(hot[0]!.properties).toEqual({ level: 'hot', site: 'lab', hub: 'localhost', missing: '$twin.tags.nothere' })
    expect(hot[0]!.systemProperties['iothub-message-source']).toBe('Telemetry')

    // nothing matched the temp-20 message: it follows the fallback route to `events`, enriched
    const events = eventsOf(await readAllEvents(t), 'rt-dev')
    expect(events.map((e) => e.body)).toEqual([base64(JSON.stringify({ temp: 20 }))])
    expect(events[0]!.properties).toEqual({ kind: 'reading', site: 'lab' })

    // a back end reads the routed blob from the hub's blob store, in the endpoint's container
    const blobs = await until(() => routedBlobs(t.dataDir, 'archive'), (f) => f.length > 0, 10_000)
    expect(blobs).toHaveLength(1)
    expect(blobs[0]!.name).toMatch(/^localhost\/\d\/\d{4}\/\d\d\/\d\d\/\d\d\/\d\d$/)
    const lines = blobs[0]!.text.trim().split('\n').map((l) => JSON.parse(l))
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatchObject({
      Body: { temp: 35 }, Properties: { kind: 'reading' },
      SystemProperties: { connectionDeviceId: 'rt-dev', contentType: 'application/json', contentEncoding: 'utf-8' },
    })
    expect(lines[0].EnqueuedTimeUtc).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z$/)

    const got = await until(() => hooked, (h) => h.some((x) => x.status === 200), 5000)
    const records = got.filter((x) => x.status === 200).flatMap((x) => x.body)
    expect(records).toHaveLength(1)
    expect(records[0]).toMatchObject({ Body: base64('w1'), Properties: { level: 'hook', fixed: 'v1' }, SystemProperties: { messageId: 'm-hook' } })
  })

  it('retries a webhook that answers 500', async () => {
    hooked.length = 0
    failNext = 2
    const dev = await connectDevice(t, 'rt-retry')
    await dev.publish('devices/rt-retry/messages/events/level=hook', 'again')
    await dev.disconnect()
    const got = await until(() => hooked, (h) => h.some((x) => x.status === 200), 8000)
    expect(got.map((x) => x.status)).toEqual([500, 500, 200])
    expect(got[2]!.body[0].Body).toBe(base64('again'))
  })
})

describe('endpoint outboxes', () => {
  it('writes a storage batch as soon as it reaches maxChunkSizeInBytes, long before its window ends', async () => {
    const put = async (path: string, body: unknown) => expect((await t.rest('PUT', path, { body })).status).toBe(200)
    await put('/routing/endpoints/storageContainers/chunks', { batchFrequencyInSeconds: 720, maxChunkSizeInBytes: 1024, encoding: 'JSON' })
    await put('/routing/routes/to-chunks', { condition: "level = 'chunk'", endpointNames: ['chunks'] })
    const dev = await connectDevice(t, 'chunk-dev')
    const publish = (i: number) => dev.publish(`devices/chunk-dev/messages/events/level=chunk&$.mid=c${i}`, 'x'.repeat(60))
    for (let i = 0; i < 5; i++) await publish(i)
    const lines = () => routedLines(t.dataDir, 'chunks')
    const ids = (l: string[]) => l.map((x) => JSON.parse(x).SystemProperties.messageId)
    // two of these records fill a 1024-byte chunk, three would not fit
    const first = await until(lines, (l) => l.length >= 4, 5000)
    for (const l of first) expect(Buffer.byteLength(l) + 1).toBeGreaterThan(1024 / 3)
    for (const l of first) expect(Buffer.byteLength(l) + 1).toBeLessThanOrEqual(1024 / 2)
    // a chunk goes out when the next record would not fit: c2 closed [c0, c1], c4 closed [c2, c3]; c4 waits
    expect(ids(first)).toEqual(['c0', 'c1', 'c2', 'c3'])
    await publish(5)
    await publish(6)
    expect(ids(await until(lines, (l) => l.length >= 6, 5000))).toEqual(['c0', 'c1', 'c2', 'c3', 'c4', 'c5'])
    for (const b of await routedBlobs(t.dataDir, 'chunks')) expect(b.name).toMatch(/^localhost\/\d\/\d{4}\/\d\d\/\d\d\/\d\d\/\d\d$/)
    await dev.disconnect()
  })

  it('drops the outbox of a removed endpoint however large its backlog, and the shard goes on serving', async () => {
    // a receiver that reads every request and never answers
    let requests = 0
    let abandoned = 0
    const hung = http.createServer((req) => { requests++; req.resume(); req.socket.once('close', () => { abandoned++ }) })
    await new Promise<void>((r) => hung.listen(0, '127.0.0.1', r))
    try {
      const url = `http://127.0.0.1:${(hung.address() as { port: number }).port}/hook?code=secret`
      const put = async (path: string, body: unknown) => expect((await t.rest('PUT', path, { body })).status).toBe(200)
      await put('/routing/endpoints/webhooks/stuck', { url, timeoutInSeconds: 60, maxDeliveryAttempts: 20 })
      await put('/routing/routes/to-stuck', { condition: "level = 'stuck'", endpointNames: ['stuck'] })
      const dev = await connectDevice(t, 'stuck-dev')
      const body = Buffer.alloc(100 * 1024, 120)
      // every one is acknowledged: PUBACK waits for the outbox, not for the receiver
      for (let i = 0; i < 200; i += 10) {
        await Promise.all(Array.from({ length: 10 }, (_, j) => dev.publish(`devices/stuck-dev/messages/events/level=stuck&$.mid=s${i + j}`, body)))
      }
      await until(() => requests, (n) => n >= 1, 5000)
      const names = outboxNames('webhook', 'stuck', 4)
      const before = await outboxEventCounts(t.dataDir, names)
      expect(Object.values(before).reduce((a: number, n) => a + (n ?? 0), 0)).toBe(200)

      expect((await t.rest('DELETE', '/routing/routes/to-stuck')).status).toBe(204)
      expect((await t.rest('DELETE', '/routing/endpoints/webhooks/stuck')).status).toBe(204)
      // answered once every shard dropped it: gone from disk, and the hung request let go
      expect(Object.values(await outboxEventCounts(t.dataDir, names))).toEqual([null, null, null, null])
      expect(await until(() => abandoned, (n) => n >= 1, 5000)).toBeGreaterThanOrEqual(1)
      await dev.publish('devices/stuck-dev/messages/events/level=after', 'after')
      await dev.disconnect()
      const events = eventsOf(await readAllEvents(t), 'stuck-dev')
      expect(events.map((e) => Buffer.from(e.body, 'base64').toString())).toEqual(['after'])
    } finally {
      hung.closeAllConnections()
      hung.close()
    }
  })
})

describe('events through routing', () => {
  it('routes twin change, lifecycle and connection state events only where routes send them', async () => {
    const put = async (path: string, body: unknown) => expect((await t.rest('PUT', path, { body })).status).toBe(200)
    await put('/routing/endpoints/logs/ev', {})
    await put('/routing/routes/twins', { source: 'TwinChangeEvents', condition: "opType = 'updateTwin' OR opType = 'replaceTwin'", endpointNames: ['ev'] })
    await put('/routing/routes/life', { source: 'DeviceLifecycleEvents', endpointNames: ['ev'] })
    await put('/routing/routes/conn', { source: 'DeviceConnectionStateEvents', endpointNames: ['ev'] })
    await put('/routing/enrichments/where', { value: 'here', endpointNames: ['ev'] })

    await t.createDevice('ev-dev')
    expect((await t.rest('PATCH', '/twins/ev-dev', { body: { tags: { a: 1 }, properties: { desired: { rate: 5 } } } })).status).toBe(200)
    const dev = await connectDevice(t, 'ev-dev')
    await sleep(100)
    await dev.disconnect()
    expect((await t.rest('DELETE', '/devices/ev-dev', { headers: { 'If-Match': '"*"' } })).status).toBe(204)

    const events = await until(() => readLog(t, 'ev').then((e) => eventsOf(e, 'ev-dev')), (e) => e.length >= 5, 5000)
    const ops = events.map((e) => e.properties.opType)
    expect(ops).toEqual(['createDeviceIdentity', 'updateTwin', 'deviceConnected', 'deviceDisconnected', 'deleteDeviceIdentity'])
    for (const e of events) {
      expect(e.properties).toMatchObject({ hubName: 'localhost', deviceId: 'ev-dev', where: 'here' })
      expect(e.properties.operationTimestamp).toMatch(/\.\d{7}Z$/)
      expect(e.systemProperties).toMatchObject({ 'content-type': 'application/json', 'content-encoding': 'utf-8', 'user-id': 'localhost' })
    }
    const body = (e: ReadEvent) => JSON.parse(Buffer.from(e.body, 'base64').toString())
    expect(events[0]!.systemProperties['iothub-message-source']).toBe('deviceLifecycleEvents')
    expect(events[0]!.properties['iothub-message-schema']).toBe('deviceLifecycleNotification')
    expect(body(events[0]!)).toMatchObject({ deviceId: 'ev-dev', version: 1, properties: { desired: { $version: 1 } } })
    expect(events[1]!.systemProperties['iothub-message-source']).toBe('twinChangeEvents')
    expect(body(events[1]!)).toMatchObject({ version: 2, tags: { a: 1 }, properties: { desired: { rate: 5, $version: 2 } } })
    expect(body(events[1]!).properties.desired.$metadata.rate.$lastUpdatedVersion).toBe(2)
    expect(events[2]!.systemProperties['iothub-message-source']).toBe('deviceConnectionStateEvents')
    const [s1, s2] = [body(events[2]!).sequenceNumber, body(events[3]!).sequenceNumber]
    expect(s1).toMatch(/^[0-9a-f]{64}$/)
    expect(s2 > s1).toBe(true)
    // none of them reached the built-in endpoint: no route sends them there
    expect(eventsOf(await readAllEvents(t), 'ev-dev')).toEqual([])
  })

  it('routes a module\'s lifecycle, twin change and connection events with its module id', async () => {
    const put = async (path: string, body: unknown) => expect((await t.rest('PUT', path, { body })).status).toBe(200)
    await put('/routing/endpoints/logs/mev', {})
    await put('/routing/routes/mtwins', { source: 'TwinChangeEvents', condition: "$connectionModuleId = 'mod'", endpointNames: ['mev'] })
    await put('/routing/routes/mlife', { source: 'DeviceLifecycleEvents', condition: "$connectionModuleId = 'mod'", endpointNames: ['mev'] })
    await put('/routing/routes/mconn', { source: 'DeviceConnectionStateEvents', condition: "$connectionModuleId = 'mod'", endpointNames: ['mev'] })
    await t.createDevice('mev-dev')
    const created = await t.rest('PUT', '/devices/mev-dev/modules/mod', { body: {} })
    expect((await t.rest('PATCH', '/twins/mev-dev/modules/mod', { body: { properties: { desired: { rate: 2 } } } })).status).toBe(200)
    // the device's own events do not match a module condition
    expect((await t.rest('PATCH', '/twins/mev-dev', { body: { properties: { desired: { rate: 3 } } } })).status).toBe(200)
    const key = created.body.authentication.symmetricKey.primaryKey as string
    const conn = await MqttTestClient.connect({
      port: t.hub.ports.mqttTcp!, clientId: 'mev-dev/mod', username: 'localhost/mev-dev/mod/?api-version=2021-04-12',
      password: createSasToken(encodeURIComponent('localhost/devices/mev-dev/modules/mod'), key, undefined, 3600),
    })
    expect(conn.connack.returnCode).toBe(0)
    await conn.client.disconnect()
    expect((await t.rest('DELETE', '/devices/mev-dev/modules/mod', { headers: { 'If-Match': '*' } })).status).toBe(204)
    const events = await until(() => readLog(t, 'mev').then((e) => eventsOf(e, 'mev-dev')), (e) => e.length >= 5, 5000)
    expect(events.map((e) => [e.properties.opType, e.properties.moduleId, e.systemProperties['iothub-connection-module-id']])).toEqual([
      ['createModuleIdentity', 'mod', 'mod'], ['updateTwin', 'mod', 'mod'], ['deviceConnected', 'mod', 'mod'], ['deviceDisconnected', 'mod', 'mod'], ['deleteModuleIdentity', 'mod', 'mod'],
    ])
    const body = (e: ReadEvent) => JSON.parse(Buffer.from(e.body, 'base64').toString())
    expect(body(events[0]!)).toMatchObject({ deviceId: 'mev-dev', moduleId: 'mod', version: 1 })
    expect(body(events[1]!)).toMatchObject({ properties: { desired: { rate: 2 } } })
  })
})

describe('persistence', () => {
  it('keeps routes, endpoints and enrichments across a restart; a storage batch not yet due waits in its outbox across it', async () => {
    const dataDir = tempDir()
    let hub = await startTestHub({}, { dataDir })
    await hub.rest('PUT', '/routing/endpoints/storageContainers/slow', { body: { batchFrequencyInSeconds: 720, encoding: 'JSON' } })
    expect((await hub.rest('PUT', '/routing/routes/all', { body: { condition: "level = 'x'", endpointNames: ['slow', 'events'] } })).status).toBe(200)
    await hub.rest('PUT', '/routing/enrichments/e1', { body: { value: 'v', endpointNames: ['events'] } })
    const dev = await connectDevice(hub, 'p-dev')
    await dev.publish('devices/p-dev/messages/events/level=x', 'kept')
    await dev.disconnect()
    expect(await routedBlobs(dataDir, 'slow')).toEqual([])
    await hub.stop()
    // its window is 12 minutes: shutdown leaves the batch in the endpoint's outbox, not in a blob (read while the next hub runs)

    hub = await startTestHub({}, { dataDir })
    try {
      const config = (await hub.rest('GET', '/routing')).body
      expect(config.routes).toEqual([{ name: 'all', source: 'DeviceMessages', condition: "level = 'x'", endpointNames: ['slow', 'events'], isEnabled: true }])
      expect(config.endpoints.storageContainers[0]).toMatchObject({ name: 'slow', batchFrequencyInSeconds: 720, encoding: 'JSON' })
      expect(config.enrichments).toEqual([{ key: 'e1', value: 'v', endpointNames: ['events'] }])
      // a 1 s window: the one that began before the restart has passed, so the batch from the outbox is written now, once
      expect((await hub.rest('PUT', '/routing/endpoints/storageContainers/slow', { body: { batchFrequencyInSeconds: 1, encoding: 'JSON' } })).status).toBe(200)
      const blobs = await until(() => routedBlobs(dataDir, 'slow'), (f) => f.length > 0, 10_000)
      expect(blobs).toHaveLength(1)
      const lines = blobs[0]!.text.trim().split('\n').map((l) => JSON.parse(l))
      expect(lines).toHaveLength(1)
      expect(lines[0]).toMatchObject({ Body: base64('kept'), Properties: { level: 'x' } })
      // and they are in force: the route still sends to `events`, with the enrichment
      const dev2 = await connectDevice(hub, 'p-dev')
      await dev2.publish('devices/p-dev/messages/events/level=x', 'again')
      await dev2.disconnect()
      const events = eventsOf(await readAllEvents(hub), 'p-dev')
      expect(events.map((e) => [Buffer.from(e.body, 'base64').toString(), e.properties.e1])).toEqual([['kept', 'v'], ['again', 'v']])
    } finally {
      await hub.stop()
    }
  })
})

describe('storage endpoints without a blob store', () => {
  it('writes JSON files under the data directory, refuses the Avro encodings (Azure\'s default) and file upload with clear 400s', async () => {
    const hub = await startTestHub({ blobStore: 'off' })
    try {
      const r = await hub.rest('PUT', '/routing/endpoints/storageContainers/noblob', { body: {} })
      expect({ status: r.status, message: r.body.Message }).toEqual({ status: 400, message: "ErrorCode:ArgumentInvalid;storage endpoint noblob: encoding avro needs the hub's blob store (--blob-store); with it off, use encoding JSON" })
      expect((await hub.rest('PUT', '/routing/endpoints/storageContainers/noblob', { body: { encoding: 'JSON', batchFrequencyInSeconds: 1 } })).status).toBe(200)
      expect((await hub.rest('PUT', '/routing/routes/to-noblob', { body: { condition: 'true', endpointNames: ['noblob'] } })).status).toBe(200)
      const dev = await connectDevice(hub, 'nb-dev')
      await dev.publish('devices/nb-dev/messages/events/', 'on disk')
      await dev.disconnect()
      const files = await until(() => filesUnder(join(hub.dataDir, 'endpoints', 'noblob')), (f) => f.length > 0, 10_000)
      expect(readFileSync(files[0]!, 'utf8')).toContain(base64('on disk'))
      // nor does file upload work: Azure's answer for a hub without storage
      const { primaryKey } = await hub.createDevice('nb-files')
      const up = await hub.rest('POST', '/devices/nb-files/files?api-version=2021-04-12', { token: hub.deviceToken('nb-files', primaryKey), body: { blobName: 'x.txt' } })
      expect({ status: up.status, message: up.body.Message }).toEqual({ status: 400, message: 'ErrorCode:DefaultStorageEndpointNotConfigured;this hub has no blob store (blobStore is off): file upload needs one' })
    } finally {
      await hub.stop()
    }
  })
})

describe('storage endpoints when the embedded blob store dies', () => {
  it('starts it again and writes again what it had not saved: every message once', async () => {
    const hub = await startTestHub({})
    try {
      expect((await hub.rest('PUT', '/routing/endpoints/storageContainers/survivor', { body: { encoding: 'JSON', batchFrequencyInSeconds: 1 } })).status).toBe(200)
      expect((await hub.rest('PUT', '/routing/routes/to-survivor', { body: { condition: 'true', endpointNames: ['survivor'] } })).status).toBe(200)
      const dev = await connectDevice(hub, 'sv-dev')
      const ids = async () => (await routedLines(hub.dataDir, 'survivor')).map((l) => JSON.parse(l).SystemProperties.messageId as string)
      await dev.publish('devices/sv-dev/messages/events/%24.mid=s0', 'zero')
      await until(ids, (x) => x.includes('s0'), 15_000)
      await dev.publish('devices/sv-dev/messages/events/%24.mid=s1', 'one')
      await until(ids, (x) => x.includes('s1'), 15_000)
      // killed at once, before its 5 s index save: it may lose s1
      const pid = hub.hub.blobStore.pid!
      process.kill(pid, 'SIGKILL')
      await until(() => hub.hub.blobStore.pid, (p) => p !== undefined && p !== pid, 20_000)
      await dev.publish('devices/sv-dev/messages/events/%24.mid=s2', 'two')
      const got = await until(ids, (x) => x.includes('s2') && x.includes('s1'), 30_000)
      expect([...got].sort()).toEqual(['s0', 's1', 's2'])
      await dev.disconnect()
    } finally {
      await hub.stop()
    }
  }, 90_000)
})
