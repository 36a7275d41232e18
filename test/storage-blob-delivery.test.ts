// Storage endpoints writing to a real blob store (Azurite in a child process, no hub): a batch is
// one block appended to its Azure-named blob, and a publish a crash interrupted is finished exactly
// once, whether the crash came before or after the block was committed.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openHubStore, type HubStore } from '../src/store/hub-store.js'
import { toStoredEvent, type RawEvent } from '../src/events/segment-codec.js'
import { OutboxLog } from '../shards/endpoint-outbox.js'
import { OutboxCursors } from '../shards/outbox-cursors.js'
import { StorageDeliverer, storageFileName } from '../shards/storage-endpoint.js'
import { BlobBatchSinks, batchBlockId } from '../shards/blob-batch-sink.js'
import { messageRecord } from '../shards/message-record.js'
import { AzuriteProcess } from '../src/storage/azurite-process.js'
import { blobServiceClient, type BlobAccess } from '../src/storage/blob-client.js'
import { ensureLocalPki } from '../src/tls/local-pki.js'
import { createLogger } from '../src/log.js'
import type { StorageEndpointDef } from '../src/routing/routing-config.js'
import { seedPki, tempDir } from './helpers/test-hub.js'
import avro from 'avsc'
import { Readable } from 'node:stream'
import { until } from './helpers/device-mqtt.js'

const dir = tempDir('hyperhub-blob-delivery-')
let store: HubStore
let azurite: AzuriteProcess
let access: BlobAccess
beforeAll(async () => {
  seedPki(dir)
  const pki = ensureLocalPki(join(dir, 'tls'), ['localhost', '127.0.0.1'])
  azurite = new AzuriteProcess({ dataDir: dir, port: 0, certFile: pki.serverCertFile, keyFile: pki.serverKeyFile, log: createLogger('silent') })
  const e = await azurite.start()
  access = { account: { accountName: e.accountName, accountKey: e.accountKey, blobEndpoint: e.blobEndpoint }, caPem: null }
  store = openHubStore(dir)
}, 30_000)
afterAll(async () => {
  await store?.close()
  await azurite?.stop()
  rmSync(dir, { recursive: true, force: true })
})

const sender = { deviceId: 'dev-1', generationId: 'g1', authMethod: '{"scope":"device","type":"sas","issuer":"iothub"}' }
const event = (t: number, body: string, mid: string): RawEvent => ({ t, sender, bag: `%24.mid=${mid}`, extra: null, body: Buffer.from(body) })
const line = (e: RawEvent) => JSON.stringify(messageRecord(toStoredEvent(e.t, e.sender, e.bag, e.extra, e.body))) + '\n'

async function blobBytes(container: string, name: string): Promise<Buffer> {
  const { service, agent } = blobServiceClient(access)
  try { return await service.getContainerClient(container).getBlockBlobClient(name).downloadToBuffer() } finally { agent.destroy() }
}
const blobText = async (container: string, name: string) => (await blobBytes(container, name)).toString()

/** An Avro container file as any Avro reader sees it: its codec and its records. */
async function readAvro(bytes: Buffer): Promise<{ codec: string; records: Record<string, unknown>[] }> {
  const decoder = new avro.streams.BlockDecoder()
  let codec = ''
  decoder.on('metadata', (_type: unknown, c: string) => { codec = c })
  const records: Record<string, unknown>[] = []
  await new Promise<void>((resolve, reject) => {
    Readable.from([bytes]).pipe(decoder).on('data', (r: Record<string, unknown>) => records.push(r)).on('end', resolve).on('error', reject)
  })
  return { codec, records }
}

function setUp(name: string, encoding: StorageEndpointDef['encoding'] = 'JSON', sinks = new BlobBatchSinks()) {
  const def: StorageEndpointDef = { name, containerName: name, fileNameFormat: '{iothub}/{partition}/{YYYY}/{MM}/{DD}/{HH}/{mm}', batchFrequencyInSeconds: 60, maxChunkSizeInBytes: 1 << 20, encoding }
  const cursors = new OutboxCursors(store.outboxCursors)
  let deliverer: StorageDeliverer | null = null
  const log = new OutboxLog(1, store.outbox('storage', name, 1), 0, () => deliverer?.wake())
  const stagingFile = join(dir, 'endpoint-staging', name, '1.jsonl')
  sinks.connect(access)
  const problems: unknown[] = []
  const start = (now: () => number, extra: Partial<ConstructorParameters<typeof StorageDeliverer>[0]> = {}) => (deliverer = new StorageDeliverer({
    def, hubName: 'hub', partition: 1, root: join(dir, 'endpoints', name), stagingFile, outbox: log.database, cursors, problem: (m, f) => problems.push([m, f]), now, blobs: sinks, ...extra,
  }))
  const id = { kind: 'storage' as const, name, partition: 1 }
  /** Each batch appended and delivered by a deliverer of its own (as across hub restarts), at the time `now`. */
  const deliverEach = async (batches: RawEvent[][], now: () => number) => {
    let delivered = cursors.get(id)?.next ?? 0
    for (const batch of batches) {
      await log.append(batch)
      delivered += batch.length
      const d = start(now)
      await until(() => cursors.get(id)?.next, (n) => n === delivered, 10_000)
      await d.stop()
    }
  }
  return { def, log, cursors, stagingFile, sinks, start, deliverEach, problems, id }
}

describe('storage endpoint into a blob store', () => {
  it('writes each window as a block of its Azure-named blob; a second batch of the same minute is appended', async () => {
    const s = setUp('blobwin')
    const t0 = Date.parse('2026-01-01T00:00:10Z')
    const e = [event(t0, 'a', 'm0'), event(t0 + 5, 'b', 'm1')]
    await s.deliverEach([[e[0]!], [e[1]!]], () => t0 + 3_600_000)
    expect(await blobText('blobwin', storageFileName(s.def.fileNameFormat, 'hub', 1, t0))).toBe(line(e[0]!) + line(e[1]!))
    expect(s.problems).toEqual([])
    s.sinks.close()
  })

  it('finishes a publish a crash interrupted exactly once: before the commit it appends, after it appends nothing', async () => {
    const t0 = Date.parse('2026-01-01T00:05:10Z')
    for (const committedBefore of [false, true]) {
      const name = committedBefore ? 'crash-after' : 'crash-before'
      const s = setUp(name)
      const e = [0, 1, 2].map((i) => event(t0 + i, `body-${i}`, `m${i}`))
      await s.log.append(e)
      const blob = storageFileName(s.def.fileNameFormat, 'hub', 1, t0)
      const staged = e.map(line).join('')
      mkdirSync(dirname(s.stagingFile), { recursive: true })
      writeFileSync(s.stagingFile, staged)
      const block = batchBlockId('abc123', 0)
      if (committedBefore) await s.sinks.append(name, blob, block, s.stagingFile)
      // the crash left the intent in the cursor and the batch staged
      await s.cursors.put(s.id, { next: 0, publish: { container: name, blob, block, end: 3, records: 3 }, incarnation: 'abc123', safe: 0 })
      const d = s.start(() => t0 + 3_600_000)
      await until(() => s.cursors.get(s.id), (c) => c?.next === 3 && !c.publish, 10_000)
      await d.stop()
      expect({ name, text: await blobText(name, blob) }).toEqual({ name, text: staged })
      s.sinks.close()
    }
  })

  it('writes Avro container files (avro, avroDeflate): the header once, a data block per batch, readable by an Avro reader', async () => {
    for (const encoding of ['avro', 'avroDeflate'] as const) {
      const s = setUp(`enc-${encoding.toLowerCase()}`, encoding)
      const t0 = Date.parse('2026-01-01T00:09:10Z')
      const e = [event(t0, 'first body', 'a0'), event(t0 + 5, JSON.stringify({ temp: 21 }), 'a1')]
      // the second batch is of the same minute: one more data block of the same file
      await s.deliverEach([[e[0]!], [e[1]!]], () => t0 + 3_600_000)
      const got = await readAvro(await blobBytes(s.def.containerName, storageFileName(s.def.fileNameFormat, 'hub', 1, t0)))
      expect(got.codec).toBe(encoding === 'avro' ? 'null' : 'deflate')
      expect(got.records.map((r) => ({ body: (r.Body as Buffer).toString(), mid: (r.SystemProperties as Record<string, string>).messageId }))).toEqual([
        { body: 'first body', mid: 'a0' }, { body: '{"temp":21}', mid: 'a1' },
      ])
      expect(got.records[0]).toMatchObject({ EnqueuedTimeUtc: '2026-01-01T00:09:10.0000000Z', Properties: {}, SystemProperties: { connectionDeviceId: 'dev-1' } })
      s.sinks.close()
    }
  })

  it('an endpoint created again under the same name writes its batches, though the old one left blocks at the same positions', async () => {
    const t0 = Date.parse('2026-01-01T00:12:10Z')
    const first = setUp('again')
    await first.log.append([event(t0, 'old', 'old-0')])
    let d = first.start(() => t0 + 3_600_000)
    await until(() => first.cursors.get(first.id)?.next, (n) => n === 1, 10_000)
    await d.stop()
    // deleted: outbox and cursor gone (as OutboxEndpoints drops them); created again, it counts from 0
    await store.dropOutbox('storage', 'again', 1)
    await first.cursors.remove(first.id)
    const second = setUp('again')
    await second.log.append([event(t0 + 1, 'new', 'new-0')])
    d = second.start(() => t0 + 3_600_000)
    await until(() => second.cursors.get(second.id)?.next, (n) => n === 1, 10_000)
    await d.stop()
    const lines = (await blobText('again', storageFileName(second.def.fileNameFormat, 'hub', 1, t0))).trim().split('\n').map((l) => JSON.parse(l).SystemProperties.messageId)
    expect(lines).toEqual(['old-0', 'new-0'])
    first.sinks.close()
    second.sinks.close()
  })

  it('keeps each batch in the outbox for the hold after its commit, and writes it again (same block, same cut) when the store reconnects', async () => {
    const t0 = Date.parse('2026-01-01T00:15:10Z')
    const s = setUp('held')
    const d = s.start(() => Date.now(), { def: { ...s.def, batchFrequencyInSeconds: 1 }, holdMs: 60_000 })
    // two 1 s windows in one minute, both in the past
    const now = Math.floor((Date.now() - 20_000) / 60_000) * 60_000 + 6000
    await s.log.append([event(now - 5000, 'a', 'h0')])
    await until(() => s.cursors.get(s.id)?.next, (n) => n === 1, 10_000)
    await s.log.append([event(now - 4000, 'b', 'h1')])
    await until(() => s.cursors.get(s.id)?.next, (n) => n === 2, 10_000)
    // both batches held: the outbox keeps them, the cursor says where a redo starts and where each ended
    expect([...s.log.database.getKeys()].length).toBeGreaterThan(0)
    expect(s.cursors.get(s.id)).toMatchObject({ next: 2, safe: 0, held: [[1, expect.any(Number)], [2, expect.any(Number)]] })
    // the store "lost" the blob (as Azurite killed before it saved): after it reconnects both batches come back, once each
    const name = storageFileName(s.def.fileNameFormat, 'hub', 1, now - 5000)
    const { service, agent } = blobServiceClient(access)
    await service.getContainerClient('held').getBlockBlobClient(name).delete()
    agent.destroy()
    s.sinks.connect(access)
    d.wake()
    const text = await until(() => blobText('held', name).catch(() => ''), (x) => x.split('\n').filter(Boolean).length >= 2, 15_000)
    expect(text.trim().split('\n').map((l) => JSON.parse(l).SystemProperties.messageId)).toEqual(['h0', 'h1'])
    await d.stop()
    s.sinks.close()
  })

  it('a container a back end deleted is created again, and the next batch lands in it', async () => {
    const t0 = Date.parse('2026-01-01T00:18:10Z')
    const s = setUp('deleted-container')
    await s.log.append([event(t0, 'before', 'c0')])
    const d = s.start(() => t0 + 3_600_000, { holdMs: 0 })
    await until(() => s.cursors.get(s.id)?.next, (n) => n === 1, 10_000)
    const { service, agent } = blobServiceClient(access)
    await service.getContainerClient('deleted-container').delete()
    agent.destroy()
    await s.log.append([event(t0 + 120_000, 'after', 'c1')])
    const name = storageFileName(s.def.fileNameFormat, 'hub', 1, t0 + 120_000)
    const text = await until(() => blobText('deleted-container', name).catch(() => ''), (x) => x.includes('c1'), 20_000)
    expect(JSON.parse(text.trim()).SystemProperties.messageId).toBe('c1')
    await d.stop()
    s.sinks.close()
  }, 30_000)

  const ids = async (container: string, name: string) => (await blobText(container, name).catch(() => '')).split('\n').filter(Boolean).map((l) => JSON.parse(l).SystemProperties.messageId as string)
  /** times in one minute of the past, so 1 s windows are closed and share a blob */
  const pastMinute = () => Math.floor((Date.now() - 30_000) / 60_000) * 60_000 + 1000

  it('an endpoint whose settings change while batches are held replays nothing under the new cut (no duplicates)', async () => {
    const t0 = pastMinute()
    const s = setUp('resettle')
    for (let i = 0; i < 10; i++) await s.log.append([event(t0 + i, 'x'.repeat(200), `r${i}`)])
    let d = s.start(() => Date.now(), { holdMs: 60_000, def: { ...s.def, batchFrequencyInSeconds: 1 } })
    await until(() => s.cursors.get(s.id)?.next, (n) => n === 10, 10_000)
    await d.stop()
    // the endpoint's chunk size changed (OutboxEndpoints restarts its deliverers with the new settings)
    d = s.start(() => Date.now(), { holdMs: 60_000, def: { ...s.def, batchFrequencyInSeconds: 1, maxChunkSizeInBytes: 1024 } })
    await s.log.append([event(t0 + 20, 'y', 'r10')])
    await until(() => s.cursors.get(s.id)?.next, (n) => n === 11, 10_000)
    await d.stop()
    expect(await ids('resettle', storageFileName(s.def.fileNameFormat, 'hub', 1, t0))).toEqual(Array.from({ length: 11 }, (_, i) => `r${i}`))
    s.sinks.close()
  })

  it('a restart replays held batches whatever their commit time, also when it first finishes a publish a crash interrupted', async () => {
    const t0 = pastMinute()
    const s = setUp('both-died')
    const a = [0, 1, 2].map((i) => event(t0 + i, `a${i}`, `a${i}`))
    const b = [3, 4, 5].map((i) => event(t0 + 1500 + i, `b${i}`, `b${i}`))
    await s.log.append(a)
    await s.log.append(b)
    // A was committed long ago (by its stored time) but the store lost it; B's publish was under way
    mkdirSync(dirname(s.stagingFile), { recursive: true })
    writeFileSync(s.stagingFile, b.map(line).join(''))
    const blob = storageFileName(s.def.fileNameFormat, 'hub', 1, t0)
    await s.cursors.put(s.id, {
      next: 3, incarnation: 'feed01', safe: 0, held: [[3, Date.now() - 3_600_000]],
      publish: { container: 'both-died', blob, block: batchBlockId('feed01', 3), end: 6, records: 3 },
    })
    const d = s.start(() => Date.now(), { def: { ...s.def, batchFrequencyInSeconds: 1 } })
    await until(() => ids('both-died', blob), (x) => x.length >= 6, 15_000)
    await d.stop()
    expect((await ids('both-died', blob)).sort()).toEqual(['a0', 'a1', 'a2', 'b3', 'b4', 'b5'])
    s.sinks.close()
  })

  it('a store that reconnects while a batch is written moves nothing past what it may have lost', async () => {
    const t0 = pastMinute()
    let reconnectDuringNext = false
    class ReconnectingSinks extends BlobBatchSinks {
      override async append(...args: Parameters<BlobBatchSinks['append']>): Promise<void> {
        // the store came back (its cache of block lists gone with it) while this batch was on its way
        if (reconnectDuringNext) { reconnectDuringNext = false; this.connect(access) }
        await super.append(...args)
      }
    }
    const s = setUp('reconnect-mid', 'JSON', new ReconnectingSinks())
    const d = s.start(() => Date.now(), { holdMs: 1000, def: { ...s.def, batchFrequencyInSeconds: 1 } })
    await s.log.append([event(t0, 'a', 'm-a')])
    const blob = storageFileName(s.def.fileNameFormat, 'hub', 1, t0)
    await until(() => ids('reconnect-mid', blob), (x) => x.includes('m-a'), 10_000)
    // A is past its hold (by the commit time its cursor records); the store then loses it, and reconnects while B is written
    const committedAt = s.cursors.get(s.id)!.held![0]![1]
    await until(() => Date.now(), (now) => now > committedAt + 1000, 5000)
    const { service, agent } = blobServiceClient(access)
    await service.getContainerClient('reconnect-mid').getBlockBlobClient(blob).delete()
    agent.destroy()
    reconnectDuringNext = true
    await s.log.append([event(t0 + 2000, 'b', 'm-b')])
    const got = await until(() => ids('reconnect-mid', blob), (x) => x.includes('m-a') && x.includes('m-b'), 15_000)
    expect([...got].sort()).toEqual(['m-a', 'm-b'])
    await d.stop()
    s.sinks.close()
  })
})
