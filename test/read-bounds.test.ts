// Issue 10 (found by the review): reads of the built-in endpoint are bounded in bytes, bodies and
// property bags alike. A REST read of 1,000 events of 250 KB built 326 MB at once; a stream frame of
// events with 60 KB property bags grew to 19 MB; partition info decoded a whole segment's bags.
import { rmSync } from 'node:fs'
import WebSocket from 'ws'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BuiltInEndpoint } from '../src/events/built-in-endpoint.js'
import { EventStream, MAX_STREAM_READERS, PUSH_TURN_BYTES, STREAM_FRAME_BODY_BYTES, type Reader } from '../src/events/event-stream.js'
import { MAX_READ_BYTES } from '../src/rest/events-routes.js'
import { openHubStore } from '../src/store/hub-store.js'
import { PartitionLog } from '../shards/partition-log.js'
import { partitionOf } from '../src/shard-protocol.js'
import { MqttTestClient } from './helpers/mqtt-test-client.js'
import { startTestHub, tempDir, type TestHub } from './helpers/test-hub.js'

let t: TestHub
let device: MqttTestClient
beforeAll(async () => {
  t = await startTestHub()
  const { primaryKey } = await t.createDevice('big-reads')
  device = (await MqttTestClient.connect({ port: t.hub.ports.mqttTcp!, clientId: 'big-reads', password: t.deviceToken('big-reads', primaryKey) })).client
})
afterAll(async () => {
  await device.disconnect()
  await t.stop()
})

const bag = (i: number) => `%24.mid=bag-${i}&${Array.from({ length: 6000 }, (_, k) => `p${k}=${i}`).join('&')}`

describe('REST reads', () => {
  it(`answer at most ${MAX_READ_BYTES} bytes of events (at least one), and read on from nextSequenceNumber`, async () => {
    for (let i = 0; i < 40; i++) await device.publish(`devices/big-reads/messages/events/%24.mid=big-${i}`, Buffer.alloc(250_000, i), 1)
    const p = partitionOf('big-reads', 4)
    const seen: string[] = []
    for (let from = 0, pages = 0; pages < 100; pages++) {
      const r = await t.rest('GET', `/messages/events/partitions/${p}/events?fromSequenceNumber=${from}&maxCount=1000`)
      expect(r.status).toBe(200)
      if (r.body.events.length === 0) break
      const bodyBytes = r.body.events.reduce((n: number, e: { body: string }) => n + Buffer.from(e.body, 'base64').length, 0)
      expect(bodyBytes).toBeLessThanOrEqual(MAX_READ_BYTES)
      seen.push(...r.body.events.map((e: { systemProperties: Record<string, string> }) => e.systemProperties['message-id']))
      from = r.body.nextSequenceNumber
    }
    expect(seen.filter((m) => m.startsWith('big-'))).toEqual(Array.from({ length: 40 }, (_, i) => `big-${i}`))
  })

  it.each([
    ['bare property names', (i: number) => `%24.mid=bare-${i}&${Array.from({ length: 8000 }, (_, k) => `q${k}`).join('&')}`],
    ['values JSON must escape', (i: number) => `%24.mid=bare-${i}&${Array.from({ length: 3000 }, (_, k) => `e${k}=%01%01%22%5C%01`).join('&')}`],
  ])('count each property as JSON writes it: a page of %s stays near the bound', async (_kind, bare) => {
    for (let i = 0; i < 100; i++) await device.publish(`devices/big-reads/messages/events/${bare(i)}`, 'x', 1)
    const p = partitionOf('big-reads', 4)
    const seen: string[] = []
    for (let from = 0, pages = 0; pages < 100; pages++) {
      const r = await t.rest('GET', `/messages/events/partitions/${p}/events?fromSequenceNumber=${from}&maxCount=1000`)
      expect(r.status).toBe(200)
      if (r.body.events.length === 0) break
      // bodies are base64 in JSON (4/3); names and values with their quotes are counted as they are written
      expect(JSON.stringify(r.body).length).toBeLessThan((MAX_READ_BYTES * 4) / 3 + 200_000)
      seen.push(...r.body.events.map((e: { systemProperties: Record<string, string> }) => e.systemProperties['message-id']))
      from = r.body.nextSequenceNumber
    }
    expect(seen.filter((m) => m.startsWith('bare-')).slice(-100)).toEqual(Array.from({ length: 100 }, (_, i) => `bare-${i}`))
  })
})

describe('the stream', () => {
  it(`sends frames of at most ${STREAM_FRAME_BODY_BYTES} bytes of bodies and properties (plus one event), large property bags too`, async () => {
    for (let i = 0; i < 30; i++) await device.publish(`devices/big-reads/messages/events/${bag(i)}`, 'x', 1)
    const frames: number[] = []
    const ws = new WebSocket(`wss://localhost:${t.hub.ports.https}/messages/events/stream?from=earliest&partitions=${partitionOf('big-reads', 4)}`,
      { ca: t.ca, headers: { Authorization: t.serviceToken('service') } })
    const done = new Promise<void>((resolve) => ws.on('message', (data) => {
      const text = data.toString()
      frames.push(Buffer.byteLength(text))
      if (text.includes('"bag-29"')) resolve()
    }))
    await done
    ws.close()
    const oneEvent = 6000 * 12 + 4000
    for (const f of frames) expect(f).toBeLessThan(2 * (STREAM_FRAME_BODY_BYTES + oneEvent))
  })

  it(`admits at most ${MAX_STREAM_READERS} readers at once (429 after)`, async () => {
    const open = () => new Promise<{ ws: WebSocket; status: number; code?: string }>((resolve) => {
      const ws = new WebSocket(`wss://localhost:${t.hub.ports.https}/messages/events/stream`, { ca: t.ca, headers: { Authorization: t.serviceToken('service') } })
      ws.once('open', () => resolve({ ws, status: 101 }))
      ws.once('unexpected-response', (_req, res) => resolve({ ws, status: res.statusCode!, code: res.headers['iothub-errorcode'] as string }))
      ws.once('error', () => {})
    })
    const readers = []
    for (let i = 0; i < MAX_STREAM_READERS; i++) readers.push(await open())
    expect(readers.every((r) => r.status === 101)).toBe(true)
    const refused = await open()
    expect({ status: refused.status, code: refused.code }).toEqual({ status: 429, code: 'ThrottlingException' })
    for (const r of readers) r.ws.close()
  })
})

describe('partition info', () => {
  it('decodes no segment (their property bags may be large)', async () => {
    const dir = tempDir()
    const store = openHubStore(dir)
    try {
      const log = new PartitionLog(0, store.partition(0), store.partitionIndex(0))
      const sender = { deviceId: 'd', generationId: 'g', authMethod: 'sas' }
      await log.append(Array.from({ length: 50 }, (_, i) => ({ t: 1000 + i, sender, bag: bag(i), extra: null, body: Buffer.from('x') })))
      const endpoint = new BuiltInEndpoint(store, 1)
      const info = endpoint.partitionInfo(0)
      expect(info).toMatchObject({ lastEnqueuedSequenceNumber: 49, lastEnqueuedTimeUtc: new Date(1049).toISOString(), isEmpty: false })
      expect(endpoint.endOf(0)).toBe(50)
      expect(endpoint.decodedSegments).toBe(0)
    } finally {
      await store.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('readers catching up', () => {
  it(`that take everything at once are sent at most ${PUSH_TURN_BYTES} bytes (plus a frame) a turn together; the rest follows in order on later turns`, async () => {
    const dir = tempDir()
    const store = openHubStore(dir)
    try {
      const log = new PartitionLog(0, store.partition(0), store.partitionIndex(0))
      const sender = { deviceId: 'd', generationId: 'g', authMethod: 'sas' }
      // 24 MB of backlog, far more than one turn
      for (let batch = 0; batch < 4; batch++) {
        await log.append(Array.from({ length: 24 }, (_, i) => ({ t: 1000, sender, bag: `%24.mid=m-${batch * 24 + i}`, extra: null, body: Buffer.alloc(250_000, i) })))
      }
      const stream = new EventStream(new BuiltInEndpoint(store, 1), () => {})
      // sockets that never fill: fast readers on loopback
      const readers = Array.from({ length: 3 }, () => {
        const reader: Reader = { positions: new Map([[0, 0]]), closed: false, expiresAt: Infinity, turn: 0, held: { keyName: 'service', token: '' } }
        const frames: string[] = []
        const ws = { getUserData: () => reader, getBufferedAmount: () => 0, send: (f: string) => { frames.push(f); return 1 as const } }
        return { reader, frames, ws }
      })
      for (const r of readers) stream.push(r.ws as never)
      const firstTurn = readers.reduce((n, r) => n + r.frames.reduce((m, f) => m + f.length, 0), 0)
      expect(firstTurn).toBeGreaterThan(0)
      expect(firstTurn).toBeLessThan(PUSH_TURN_BYTES + (2 * STREAM_FRAME_BODY_BYTES * 4) / 3 + 4096)
      const ids = (frames: string[]) => frames.flatMap((f) => (JSON.parse(f) as { systemProperties: Record<string, string> }[]).map((e) => e.systemProperties['message-id']))
      for (let turns = 0; turns < 500 && readers.some((r) => ids(r.frames).length < 96); turns++) await new Promise((r) => setImmediate(r))
      for (const r of readers) expect(ids(r.frames)).toEqual(Array.from({ length: 96 }, (_, i) => `m-${i}`))
      for (const r of readers) r.reader.closed = true
    } finally {
      await store.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
