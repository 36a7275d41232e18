// A storage endpoint partition (routing.md "Storage endpoint details"): records from its outbox are
// batched into blobs of JSON lines in the endpoint's container of the hub's blob store, with Azure's
// file name format (or, with no blob store, into files under `{dataDir}/endpoints/{name}/`).
// A batch (window) starts at the enqueued time of its first event and holds the events enqueued in the
// next batchFrequencyInSeconds, up to maxChunkSizeInBytes; it is written when the window has passed
// (also when that happened while the hub was down) or when it is full. It is staged on disk as it is
// read, a bounded slice at a time, then moved into its blob (as one block) or file and only then does
// the cursor move: each record lands exactly once, across crashes too. Choices: a batch whose file already exists
// (two batches in one minute) is appended to it; a window without messages writes no file; what is
// not due at shutdown stays in the outbox.
import { join } from 'node:path'
import type { Database } from 'lmdb'
import type { StorageEndpointDef } from '../src/routing/routing-config.js'
import { DeliverySignal } from './delivery-signal.js'
import { outboxEvents, trimDelivered } from './endpoint-outbox.js'
import { messageRecord } from './message-record.js'
import { avroRecord } from './avro-records.js'
import type { BlobPublishIntent, OutboxCursor, OutboxCursors, OutboxId, PublishIntent } from './outbox-cursors.js'
import { batchBlockId, newIncarnation, type BlobBatchSinks } from './blob-batch-sink.js'
import { sizeOf, StagedBatch } from './storage-batch-file.js'

const pad = (n: number) => String(n).padStart(2, '0')

/** Azure's file name tokens, in UTC at the batch's start. */
export function storageFileName(format: string, hubName: string, partition: number, at: number): string {
  const d = new Date(at)
  return format.replaceAll('{iothub}', hubName).replaceAll('{partition}', String(partition))
    .replaceAll('{YYYY}', String(d.getUTCFullYear())).replaceAll('{MM}', pad(d.getUTCMonth() + 1)).replaceAll('{DD}', pad(d.getUTCDate()))
    .replaceAll('{HH}', pad(d.getUTCHours())).replaceAll('{mm}', pad(d.getUTCMinutes()))
}

/** One slice staged per event-loop turn at most: the shard serves its devices in between. */
const SLICE_RECORDS = 500
const SLICE_BYTES = 1024 * 1024
const RETRY_MS = [1000, 2000, 5000, 10_000, 30_000]

export interface StorageDelivererOptions {
  def: StorageEndpointDef
  hubName: string
  partition: number
  /** `{dataDir}/endpoints/{name}` */
  root: string
  stagingFile: string
  outbox: Database
  cursors: OutboxCursors
  problem(message: string, fields: Record<string, unknown>): void
  now?: () => number
  /** the hub's blob store; without it batches go to files under `root` */
  blobs?: BlobBatchSinks
  /** how long the outbox keeps a batch after its blob commit (BLOB_HOLD_MS unless set) */
  holdMs?: number
}

/**
 * The embedded store (Azurite) saves its index every 5 s: a batch committed in its last seconds before
 * it was killed is gone from it (a save takes time too: 12 s leaves it 7). So the outbox keeps each batch this long after its commit, the cursor
 * keeps the position before them (`safe`) and where each held batch ended, and a deliverer starting
 * (or seeing the store reconnect) writes them again from there, cut at the same ends so each has the
 * same block id; the block ids make what the store kept a no-op.
 */
export const BLOB_HOLD_MS = 12_000

interface Window { startedAt: number; bytes: number; records: number }

export class StorageDeliverer {
  private readonly signal = new DeliverySignal()
  private readonly id: OutboxId
  private readonly staged: StagedBatch
  private readonly now: () => number
  private readonly done: Promise<void>
  /** blob mode: batches committed and still held, oldest first */
  private held: { end: number; at: number }[] = []
  /** ends of held batches still to be written again, in order (a replay cuts its windows there) */
  private replayEnds: number[] = []
  private safe = 0
  private incarnation = ''
  /** the sink's generation this deliver started with: a batch committed after a reconnect moves nothing */
  private generation: number | undefined

  constructor(private readonly o: StorageDelivererOptions) {
    this.id = { kind: 'storage', name: o.def.name, partition: o.partition }
    this.staged = new StagedBatch(o.stagingFile)
    this.now = o.now ?? Date.now
    this.done = this.run()
  }

  /** More events were committed to the outbox. */
  wake(): void { this.signal.wake() }

  /** Finishes the step under way (a publish runs to its end); the rest stays in the outbox. */
  async stop(): Promise<void> {
    this.signal.stop()
    await this.done
  }

  /** Disk full, permissions: nothing moved, so the window is staged again from the cursor. */
  private run(): Promise<void> {
    return this.signal.runUntilStopped(() => this.deliver(),
      (e) => this.o.problem('storage endpoint write failed; retrying', { endpoint: this.o.def.name, partition: this.o.partition, error: e.message }),
      (failures) => RETRY_MS[Math.min(failures, RETRY_MS.length - 1)]!)
  }

  private async deliver(): Promise<void> {
    // taken before the recovery, whose finish checks it too
    const generation = (this.generation = this.o.blobs?.generation)
    let cursor = await this.recover()
    // blob mode: from the safe point (what the store may have lost is written again)
    if (this.o.blobs) {
      cursor = { ...cursor, next: this.safe }
      this.replayEnds = this.held.map((h) => h.end)
    }
    // a window staged before a restart or a failure is staged again from the outbox
    await this.staged.discard()
    const windowMs = this.o.def.batchFrequencyInSeconds * 1000
    let next = cursor.next
    let window: Window | null = null
    while (!this.signal.isStopped) {
      if (this.o.blobs && this.o.blobs.generation !== generation) throw new Error('the blob store reconnected: the batches of its last seconds are written again')
      const slice = this.readSlice(next, window, windowMs, this.replayEnds[0])
      window = slice.window
      if (slice.text.length > 0) await this.staged.append(slice.text)
      next = slice.next
      if (window && (slice.isFull || (slice.isCaughtUp && this.now() >= window.startedAt + windowMs))) {
        if (this.replayEnds[0] !== undefined && next >= this.replayEnds[0]) this.replayEnds.shift()
        cursor = await this.publish(cursor, window, next)
        window = null
      } else if (slice.isCaughtUp) {
        await this.signal.wait(window ? window.startedAt + windowMs - this.now() : undefined)
      } else {
        await new Promise((r) => setImmediate(r))
      }
    }
  }

  /** Reads and formats up to one slice of the open window (synchronous: the LMDB iterator must not outlive the turn). */
  private readSlice(from: number, open: Window | null, windowMs: number, cutAt?: number): { text: Buffer; next: number; window: Window | null; isFull: boolean; isCaughtUp: boolean } {
    const max = this.o.def.maxChunkSizeInBytes
    const avro = this.o.def.encoding !== 'JSON'
    const lines: Buffer[] = []
    const text = () => Buffer.concat(lines)
    let sliceBytes = 0
    let next = from
    let window = open
    for (const { sequence, event } of outboxEvents(this.o.outbox, from)) {
      // a replayed batch ends where it ended the first time
      if (window && cutAt !== undefined && sequence >= cutAt) return { text: text(), next, window, isFull: true, isCaughtUp: false }
      if (!window) window = { startedAt: event.t, bytes: 0, records: 0 }
      // the next window's first event: this one is complete
      if (event.t >= window.startedAt + windowMs) return { text: text(), next, window, isFull: true, isCaughtUp: false }
      const line = avro ? avroRecord(event) : Buffer.from(JSON.stringify(messageRecord(event)) + '\n')
      const size = line.length
      // a chunk never exceeds maxChunkSizeInBytes, unless one record alone does
      if (window.bytes > 0 && window.bytes + size > max) return { text: text(), next, window, isFull: true, isCaughtUp: false }
      lines.push(line)
      window.bytes += size
      window.records++
      sliceBytes += size
      next = sequence + 1
      if (window.bytes >= max) return { text: text(), next, window, isFull: true, isCaughtUp: false }
      if (lines.length >= SLICE_RECORDS || sliceBytes >= SLICE_BYTES) return { text: text(), next, window, isFull: false, isCaughtUp: false }
    }
    return { text: text(), next, window, isFull: false, isCaughtUp: true }
  }

  /** Moves the staged window into its blob or file, then the cursor past it. */
  private async publish(cursor: OutboxCursor, window: Window, end: number): Promise<OutboxCursor> {
    const name = storageFileName(this.o.def.fileNameFormat, this.o.hubName, this.o.partition, window.startedAt)
    await this.staged.sync()
    const intent: PublishIntent | BlobPublishIntent = this.o.blobs
      ? { container: this.o.def.containerName, blob: name, block: batchBlockId(this.incarnation, cursor.next), end, records: window.records }
      : { file: join(this.o.root, name), base: await sizeOf(join(this.o.root, name)), end }
    await this.o.cursors.put(this.id, { next: cursor.next, publish: intent, ...this.marks() })
    await this.move(intent)
    return this.finish(intent.end)
  }

  private async move(intent: PublishIntent | BlobPublishIntent): Promise<void> {
    if (!('blob' in intent)) return this.staged.moveInto(intent)
    if (!this.o.blobs) throw new Error('a blob publish was under way, and this hub has no blob store now')
    const avro = this.o.def.encoding === 'JSON' ? undefined : { codec: this.o.def.encoding === 'avroDeflate' ? 'deflate' as const : 'null' as const, records: intent.records }
    await this.o.blobs.append(intent.container, intent.blob, intent.block, this.staged.path, this.signal, avro)
    await this.staged.discard()
  }

  /** What the cursor keeps beside its position: the endpoint's incarnation and, in blob mode, the safe point. */
  private marks(): { incarnation: string; safe?: number; held?: [number, number][]; heldFor?: string } {
    return this.o.blobs
      ? { incarnation: this.incarnation, safe: this.safe, held: this.held.map((h) => [h.end, h.at] as [number, number]), heldFor: this.settings() }
      : { incarnation: this.incarnation }
  }

  /** What decides a batch's cut and blob: held batches are replayed only under the settings they were written with. */
  private settings(): string {
    const d = this.o.def
    return JSON.stringify([d.containerName, d.fileNameFormat, d.batchFrequencyInSeconds, d.maxChunkSizeInBytes, d.encoding])
  }

  private async finish(end: number): Promise<OutboxCursor> {
    // the store reconnected while this batch was written: it may have lost the held ones; nothing moves, deliver starts over
    if (this.o.blobs && this.o.blobs.generation !== this.generation) throw new Error('the blob store reconnected: the batches of its last seconds are written again')
    if (this.o.blobs) {
      // the safe point moves past batches held long enough; the outbox is trimmed only up to it
      const now = Date.now()
      // a batch written again is held again from now (kept in its place: the safe point passes only a run of old ones)
      const again = this.held.find((h) => h.end === end)
      if (again) again.at = now
      else this.held.push({ end, at: now })
      const hold = this.o.holdMs ?? BLOB_HOLD_MS
      while (this.held.length > 0 && this.held[0]!.at <= now - hold) this.safe = this.held.shift()!.end
    } else {
      this.safe = end
    }
    const cursor = { next: end, ...this.marks() }
    await this.o.cursors.put(this.id, cursor)
    await trimDelivered(this.o.outbox, this.safe)
    return cursor
  }

  /** Finishes a publish a crash interrupted: the stage is removed only once the file holds it durably. */
  private async recover(): Promise<OutboxCursor> {
    const cursor = this.o.cursors.get(this.id) ?? { next: 0 }
    // an outbox from before incarnations gets one now
    this.incarnation = cursor.incarnation ?? newIncarnation()
    // a cursor from before safe points trusts what it says was delivered
    this.safe = cursor.safe ?? cursor.publish?.end ?? cursor.next
    // held batches are confirmed again by this run's replay: none is passed on the strength of an old commit time;
    // an endpoint whose settings changed would cut them differently (duplicates): its hold is dropped
    const now = Date.now()
    const sameSettings = cursor.heldFor === undefined || cursor.heldFor === this.settings()
    this.held = sameSettings ? (cursor.held ?? []).map(([end]) => ({ end, at: now })) : []
    if (!sameSettings) this.safe = cursor.publish?.end ?? cursor.next
    if (!cursor.publish) return cursor
    if (await this.staged.exists()) await this.move(cursor.publish)
    return this.finish(cursor.publish.end)
  }
}
