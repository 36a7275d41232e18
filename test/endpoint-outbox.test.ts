// Outboxes of storage and webhook endpoints, driven directly on a real LMDB environment (no hub):
// bounded segments and reads, trimming what was delivered, storage batches per window and per chunk
// size with Azure's names, a storage publish a crash interrupted finished exactly once, and webhook
// delivery that holds one bounded batch, follows no redirect and reads no answer whole.
import http from 'node:http'
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { openHubStore, type HubStore } from '../src/store/hub-store.js'
import { toStoredEvent, type RawEvent } from '../src/events/segment-codec.js'
import { OUTBOX_SEGMENT_EVENTS, OutboxLog, outboxEvents, trimDelivered } from '../shards/endpoint-outbox.js'
import { OutboxCursors } from '../shards/outbox-cursors.js'
import { StorageDeliverer, storageFileName } from '../shards/storage-endpoint.js'
import { MAX_BATCH_BYTES, MAX_BATCH_RECORDS, WebhookDeliverer, webhookMemory } from '../shards/webhook-endpoint.js'
import { messageRecord } from '../shards/message-record.js'
import type { StorageEndpointDef, WebhookEndpointDef } from '../src/routing/routing-config.js'
import { tempDir } from './helpers/test-hub.js'
import { until } from './helpers/device-mqtt.js'

const dirs: string[] = []
const stores: HubStore[] = []
const servers: http.Server[] = []
afterEach(async () => {
  for (const s of servers.splice(0)) { s.closeAllConnections(); s.close() }
})
afterAll(async () => {
  for (const s of stores) await s.close()
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

function newStore(): { store: HubStore; dir: string; cursors: OutboxCursors } {
  const dir = tempDir('hyperhub-outbox-')
  dirs.push(dir)
  const store = openHubStore(dir)
  stores.push(store)
  return { store, dir, cursors: new OutboxCursors(store.outboxCursors) }
}

const sender = { deviceId: 'dev-1', generationId: 'g1', authMethod: '{"scope":"device","type":"sas","issuer":"iothub"}' }
const event = (t: number, body: string | Buffer, mid = ''): RawEvent => ({ t, sender, bag: mid ? `%24.mid=${mid}` : '', extra: null, body: Buffer.from(body) })
const line = (e: RawEvent) => JSON.stringify(messageRecord(toStoredEvent(e.t, e.sender, e.bag, e.extra, e.body))) + '\n'
const countEvents = (log: OutboxLog) => [...outboxEvents(log.database, 0)].length

async function listen(handler: http.RequestListener): Promise<string> {
  const server = http.createServer(handler)
  servers.push(server)
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
  })
}

describe('outbox log', () => {
  it('splits a large commit into bounded segments, reads on from any sequence number and trims only what is delivered', async () => {
    const { store } = newStore()
    const log = new OutboxLog(0, store.outbox('webhook', 'w', 0), 0, () => {})
    const events = Array.from({ length: 600 }, (_, i) => event(1000 + i, `m${i}`))
    await log.append(events)
    const keys = [...log.database.getKeys()] as number[]
    expect(keys).toEqual([0, OUTBOX_SEGMENT_EVENTS, 2 * OUTBOX_SEGMENT_EVENTS])
    const from300 = [...outboxEvents(log.database, 300)]
    expect(from300.map((x) => x.sequence)).toEqual(Array.from({ length: 300 }, (_, i) => 300 + i))
    expect(Buffer.from(from300[0]!.event.b).toString()).toBe('m300')

    // delivered up to 300: the first segment goes, the one holding 300 stays
    await trimDelivered(log.database, 300)
    expect([...log.database.getKeys()]).toEqual([OUTBOX_SEGMENT_EVENTS, 2 * OUTBOX_SEGMENT_EVENTS])
    await trimDelivered(log.database, 600)
    expect([...log.database.getKeys()]).toEqual([])
    // everything delivered and trimmed: numbering goes on from the cursor, not from 0
    const again = new OutboxLog(0, log.database, 600, () => {})
    expect(again.next.sequence).toBe(600)
  })

  it('wakes its deliverer only after the commit, and drops appends once retired', async () => {
    const { store } = newStore()
    let wakes = 0
    const log = new OutboxLog(0, store.outbox('storage', 's', 0), 0, () => { wakes++ })
    const committed = log.append([event(1, 'a')])
    expect(wakes).toBe(0)
    await committed
    await Promise.resolve()
    expect(wakes).toBe(1)
    log.retire()
    expect(await log.append([event(2, 'b')])).toBe(true)
    expect(countEvents(log)).toBe(1)
  })
})

describe('storage deliverer', () => {
  const def = (maxChunkSizeInBytes: number): StorageEndpointDef => ({
    name: 'arch', containerName: 'arch', fileNameFormat: '{iothub}/{partition}/{YYYY}/{MM}/{DD}/{HH}/{mm}', batchFrequencyInSeconds: 60, maxChunkSizeInBytes, encoding: 'JSON',
  })

  function setUp(maxChunk: number, now: () => number) {
    const { store, dir, cursors } = newStore()
    let deliverer: StorageDeliverer | null = null
    const log = new OutboxLog(2, store.outbox('storage', 'arch', 2), 0, () => deliverer?.wake())
    const root = join(dir, 'endpoints', 'arch')
    const stagingFile = join(dir, 'endpoint-staging', 'arch', '2.jsonl')
    const problems: unknown[] = []
    const start = () => (deliverer = new StorageDeliverer({
      def: def(maxChunk), hubName: 'hub', partition: 2, root, stagingFile, outbox: log.database, cursors, problem: (m, f) => problems.push([m, f]), now,
    }))
    const file = (at: string) => join(root, storageFileName(def(maxChunk).fileNameFormat, 'hub', 2, Date.parse(at)))
    return { log, cursors, root, stagingFile, problems, start, file, id: { kind: 'storage' as const, name: 'arch', partition: 2 } }
  }

  it('writes a batch per window of enqueued time and per maxChunkSizeInBytes, named for its first event; a window not yet due waits', async () => {
    const at = (iso: string) => Date.parse(`2026-01-01T${iso}Z`)
    const e = [at('00:00:10'), at('00:00:40'), at('00:01:05'), at('00:01:30'), at('00:03:00')].map((t, i) => event(t, 'x'.repeat(300), `m${i}`))
    const size = Buffer.byteLength(line(e[0]!))
    let now = at('00:03:30')
    const s = setUp(2 * size + 10, () => now)
    // one commit each: one segment each
    for (const x of e) await s.log.append([x])
    let d = s.start()
    // m4's window (from 00:03:00) is not due at 00:03:30: it is staged, not written
    await until(() => (existsSync(s.stagingFile) ? readFileSync(s.stagingFile, 'utf8') : ''), (t) => t === line(e[4]!), 5000)
    await d.stop()
    // m0, m1 fill a chunk; m2 is still in their window by time but starts the next chunk, named for its own minute
    expect(readFileSync(s.file(`2026-01-01T00:00:10Z`), 'utf8')).toBe(line(e[0]!) + line(e[1]!))
    expect(readFileSync(s.file(`2026-01-01T00:01:05Z`), 'utf8')).toBe(line(e[2]!) + line(e[3]!))
    expect(existsSync(s.file(`2026-01-01T00:03:00Z`))).toBe(false)
    expect(s.cursors.get(s.id)).toEqual({ next: 4, incarnation: expect.stringMatching(/^[0-9a-f]{6}$/) })
    // what was written is trimmed from the outbox; m4 is still there
    expect([...s.log.database.getKeys()]).toEqual([4])

    // restarted after its window passed (as after downtime): written at once
    now = at('00:10:00')
    d = s.start()
    await until(() => s.cursors.get(s.id)?.next, (n) => n === 5, 5000)
    await d.stop()
    expect(readFileSync(s.file(`2026-01-01T00:03:00Z`), 'utf8')).toBe(line(e[4]!))
    expect(existsSync(s.stagingFile)).toBe(false)
    expect(s.problems).toEqual([])
  })

  it('finishes a publish a crash interrupted exactly once: an append cut short is truncated and redone', async () => {
    const t0 = Date.parse('2026-01-01T00:00:10Z')
    const s = setUp(1 << 20, () => t0 + 3_600_000)
    const e = [0, 1, 2].map((i) => event(t0 + i, `body-${i}`, `m${i}`))
    await s.log.append(e)
    const file = s.file('2026-01-01T00:00:10Z')
    const earlier = 'an earlier batch of the same minute\n'
    mkdirSync(dirname(file), { recursive: true })
    // the crash came in the middle of appending the staged batch to the file
    writeFileSync(file, earlier + line(e[0]!).slice(0, 20))
    mkdirSync(dirname(s.stagingFile), { recursive: true })
    writeFileSync(s.stagingFile, e.map(line).join(''))
    await s.cursors.put(s.id, { next: 0, publish: { file, base: Buffer.byteLength(earlier), end: 3 } })
    const d = s.start()
    await until(() => s.cursors.get(s.id), (c) => c?.next === 3 && !c.publish, 5000)
    await d.stop()
    expect(readFileSync(file, 'utf8')).toBe(earlier + e.map(line).join(''))
    expect(existsSync(s.stagingFile)).toBe(false)
  })

  it('does not write a batch twice when the crash came after it was in its file but before the cursor moved', async () => {
    const t0 = Date.parse('2026-01-01T00:00:10Z')
    const s = setUp(1 << 20, () => t0 + 3_600_000)
    const e = [0, 1].map((i) => event(t0 + i, `body-${i}`, `m${i}`))
    await s.log.append(e)
    const file = s.file('2026-01-01T00:00:10Z')
    mkdirSync(dirname(file), { recursive: true })
    // renamed into place (a new file), staging gone, cursor not yet moved
    writeFileSync(file, e.map(line).join(''))
    await s.cursors.put(s.id, { next: 0, publish: { file, base: -1, end: 2 } })
    const d = s.start()
    await until(() => s.cursors.get(s.id), (c) => c?.next === 2 && !c.publish, 5000)
    await d.stop()
    expect(readFileSync(file, 'utf8')).toBe(e.map(line).join(''))
  })
})

describe('webhook deliverer', () => {
  const def = (url: string, extra: Partial<WebhookEndpointDef> = {}): WebhookEndpointDef => ({ name: 'hook', url, maxDeliveryAttempts: 3, timeoutInSeconds: 60, ...extra })

  function setUp() {
    const { store, cursors } = newStore()
    let deliverer: WebhookDeliverer | null = null
    const log = new OutboxLog(1, store.outbox('webhook', 'hook', 1), 0, () => deliverer?.wake())
    const problems: [string, Record<string, unknown>][] = []
    const start = (d: WebhookEndpointDef) => (deliverer = new WebhookDeliverer({ def: d, partition: 1, outbox: log.database, cursors, problem: (m, f) => problems.push([m, f]), policy: () => ({ allowPrivate: true, hubPorts: [] }) }))
    return { log, cursors, problems, start, id: { kind: 'webhook' as const, name: 'hook', partition: 1 } }
  }

  it('holds one bounded batch in memory while the receiver hangs; the backlog stays in the outbox', async () => {
    const requests: { bytes: number; ended: boolean; closed: boolean }[] = []
    // accepts and reads every request, never answers
    const url = await listen((req) => {
      const r = { bytes: 0, ended: false, closed: false }
      requests.push(r)
      req.on('data', (c: Buffer) => { r.bytes += c.length })
      req.on('end', () => { r.ended = true })
      req.socket.on('close', () => { r.closed = true })
    })
    const s = setUp()
    const body = Buffer.alloc(100 * 1024, 7)
    for (let i = 0; i < 10; i++) await s.log.append(Array.from({ length: 30 }, (_, j) => event(1000 + i * 30 + j, body, `m${i * 30 + j}`)))
    const d = s.start(def(url))
    await until(() => requests, (r) => r[0]?.ended === true, 5000)
    expect(requests).toHaveLength(1)
    expect(requests[0]!.bytes).toBeLessThanOrEqual(MAX_BATCH_BYTES)
    // 300 records of ~137 KB are ~41 MB; the deliverer holds at most one batch of them
    expect(webhookMemory().peakHeldBytes).toBeLessThanOrEqual(MAX_BATCH_BYTES)
    expect(webhookMemory().heldBytes).toBeGreaterThan(0)
    expect(countEvents(s.log)).toBe(300)
    await d.stop()
    expect(webhookMemory().heldBytes).toBe(0)
    await until(() => requests[0]!.closed, (c) => c, 5000)
    expect(requests[0]!.closed).toBe(true)
    expect(countEvents(s.log)).toBe(300)
    expect(s.cursors.get(s.id)).toBeUndefined()
  })

  it(`posts at most ${MAX_BATCH_RECORDS} records a request, in order, then trims the outbox`, async () => {
    const batches: string[][] = []
    const url = await listen(async (req, res) => {
      batches.push((JSON.parse(await readBody(req)) as { SystemProperties: { messageId: string } }[]).map((r) => r.SystemProperties.messageId))
      res.writeHead(204).end()
    })
    const s = setUp()
    await s.log.append(Array.from({ length: 1200 }, (_, i) => event(1000 + i, 'small', `m${i}`)))
    const d = s.start(def(url))
    await until(() => s.cursors.get(s.id)?.next, (n) => n === 1200, 5000)
    await d.stop()
    expect(batches.map((b) => b.length)).toEqual([500, 500, 200])
    expect(batches.flat()).toEqual(Array.from({ length: 1200 }, (_, i) => `m${i}`))
    expect([...s.log.database.getKeys()]).toEqual([])
  })

  it('does not follow a redirect: the batch is dropped and logged without the URL, and the target receives nothing', async () => {
    const target: string[] = []
    const targetUrl = await listen(async (req, res) => { target.push(await readBody(req)); res.writeHead(200).end() })
    const seen: string[] = []
    const url = await listen(async (req, res) => {
      const ids = (JSON.parse(await readBody(req)) as { SystemProperties: { messageId: string } }[]).map((r) => r.SystemProperties.messageId)
      seen.push(...ids)
      if (ids.includes('m-redirected')) res.writeHead(307, { location: `${targetUrl}/internal` }).end()
      else res.writeHead(200).end()
    })
    const s = setUp()
    const d = s.start(def(`${url}/hook?key=secret-key`))
    await s.log.append([event(1, 'a', 'm-redirected')])
    await until(() => seen, (x) => x.length === 1, 5000)
    // the marker goes out only after the first batch was settled: had the 307 been followed, the target would have it by now
    await s.log.append([event(2, 'b', 'm-marker')])
    await until(() => seen, (x) => x.length === 2, 5000)
    await d.stop()
    expect(seen).toEqual(['m-redirected', 'm-marker'])
    expect(target).toEqual([])
    expect(s.problems).toHaveLength(1)
    expect(s.problems[0]![1]).toMatchObject({ endpoint: 'hook', records: 1, attempts: 1, reason: 'HTTP 307 (redirects are not followed)' })
    expect(JSON.stringify(s.problems)).not.toMatch(/secret-key|127\.0\.0\.1/)
  })

  it('reads only the start of a huge answer, then cancels it', async () => {
    const answers: { written: number; closed: boolean }[] = []
    const chunk = Buffer.alloc(1024 * 1024, 97)
    const url = await listen(async (req, res) => {
      await readBody(req)
      const a = { written: 0, closed: false }
      answers.push(a)
      res.on('close', () => { a.closed = true })
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(150 * chunk.length) })
      // 150 MB, written only as fast as the hub reads it
      const pump = () => {
        while (!a.closed && a.written < 150 * chunk.length) {
          a.written += chunk.length
          if (!res.write(chunk)) { res.once('drain', pump); return }
        }
        if (!a.closed) res.end()
      }
      pump()
    })
    const s = setUp()
    const d = s.start(def(url))
    await s.log.append([event(1, 'a', 'm1')])
    await until(() => s.cursors.get(s.id)?.next, (n) => n === 1, 10_000)
    await until(() => answers[0]?.closed, (c) => c === true, 10_000)
    await d.stop()
    expect(s.problems).toEqual([])
    expect(answers).toHaveLength(1)
    // what socket buffers take, not 150 MB
    expect(answers[0]!.written).toBeLessThan(16 * 1024 * 1024)
  })
})
