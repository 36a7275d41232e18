// The read side of the built-in endpoint: partitions, reads by sequence number or enqueued time,
// consumer groups and their checkpoints. Shards write the partitions; the edge only reads them.
// Routing log endpoints are the same kind of log under another name (`name` other than `events`),
// with their own consumer groups and checkpoints.
import type { HubStore } from '../store/hub-store.js'
import { decodeSegment, segmentSpan, type DecodedSegment, type SegmentSpan, type StoredEvent } from './segment-codec.js'
import { firstByOffset, firstByTime, lastHeader } from './segment-index.js'
import { HubError } from '../rest/hub-error.js'
import type { WriteHealth } from '../store/write-health.js'

export const DEFAULT_CONSUMER_GROUP = '$Default'
export const MAX_CONSUMER_GROUPS = 20
const CONSUMER_GROUP_NAME = /^[A-Za-z0-9$][A-Za-z0-9._\-$]{0,49}$/

export interface EventJson {
  partitionId: string
  sequenceNumber: number
  offset: string
  enqueuedTimeUtc: string
  systemProperties: Record<string, string>
  properties: Record<string, string>
  /** base64 */
  body: string
}

export interface Checkpoint { sequenceNumber: number; offset: string; updatedTimeUtc: string }

export function toEventJson(partition: number, seq: number, offset: number, e: StoredEvent): EventJson {
  return {
    partitionId: String(partition), sequenceNumber: seq, offset: String(offset), enqueuedTimeUtc: new Date(e.t).toISOString(),
    systemProperties: e.s, properties: e.p, body: Buffer.from(e.b).toString('base64'),
  }
}

/** JSON's quotes, colon and comma around each property, and what decoding one costs beyond its characters. */
const PROPERTY_OVERHEAD = 8

/** What `text` takes in UTF-8 JSON: control characters become `\u00XX`, quotes and backslashes get a backslash. */
export function jsonTextSize(text: string): number {
  let n = 0
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c < 0x20) n += 6
    else if (c === 0x22 || c === 0x5c) n += 2
    else if (c < 0x80) n += 1
    else if (c < 0x800) n += 2
    else if (c >= 0xd800 && c <= 0xdfff) n += 6 // a lone surrogate is escaped; a pair counts 12 for 4 bytes, an over-count
    else n += 3
  }
  return n
}

/** What an event weighs once written out: its body and its properties' names and values as JSON, each property with its overhead. */
export function storedSize(e: StoredEvent): number {
  let n = e.b.length
  for (const k in e.s) n += jsonTextSize(k) + jsonTextSize(e.s[k]!) + PROPERTY_OVERHEAD
  for (const k in e.p) n += jsonTextSize(k) + jsonTextSize(e.p[k]!) + PROPERTY_OVERHEAD
  return n
}

export class BuiltInEndpoint {
  /** The last segment decoded per partition: readers mostly read on from where they were. */
  private readonly cache = new Map<number, DecodedSegment>()
  /** Segments decoded so far (cache hits excluded): what reads and position look-ups have cost. */
  decodedSegments = 0

  /** `health`: the main thread's write gate (consumer groups and checkpoints are written here) */
  constructor(private readonly store: HubStore, readonly partitions: number, readonly name = 'events', private readonly health?: WriteHealth) {}

  private write<T>(op: () => Promise<T>): Promise<T> {
    return this.health ? this.health.run(op) : op()
  }

  private get builtIn(): boolean { return this.name === 'events' }

  private db(p: number) {
    return this.builtIn ? this.store.partition(p) : this.store.endpointPartition(this.name, p)
  }

  private index(p: number) {
    return this.builtIn ? this.store.partitionIndex(p) : this.store.endpointPartitionIndex(this.name, p)
  }

  private get groupsKey(): string { return this.builtIn ? 'consumerGroups' : `consumerGroups:${this.name.toLowerCase()}` }

  private checkpointKey(group: string, p: number): string {
    return this.builtIn ? `${group}/${p}` : `endpoint:${this.name.toLowerCase()}/${group}/${p}`
  }

  /** Other threads append: see their latest commits. */
  refresh(): void { this.store.root.resetReadTxn() }

  checkPartition(raw: string): number {
    const p = Number(raw)
    if (!/^\d+$/.test(raw) || p >= this.partitions) throw new HubError(404000, `partition ${raw} does not exist (0..${this.partitions - 1})`)
    return p
  }

  private decode(p: number, key: number, value: Uint8Array): DecodedSegment {
    const cached = this.cache.get(p)
    if (cached?.firstSequence === key) return cached
    const seg = decodeSegment(key, value)
    this.decodedSegments++
    this.cache.set(p, seg)
    return seg
  }

  /** Segments from the one holding `fromSequence` (or the first after it) onwards. */
  private *segments(p: number, fromSequence = 0, reverse = false): Generator<DecodedSegment> {
    const db = this.db(p)
    let start: number | undefined = fromSequence
    if (!reverse) {
      for (const key of db.getKeys({ start: fromSequence, reverse: true, limit: 1 })) start = key as number
    } else {
      start = undefined
    }
    for (const { key, value } of db.getRange(reverse ? { reverse: true } : { start })) yield this.decode(p, key as number, value as Uint8Array)
  }

  private firstSequence(p: number): number | undefined {
    for (const key of this.db(p).getKeys({ limit: 1 })) return key as number
    return undefined
  }

  /** The newest segment's span, without decoding its events (their property bags can be large). */
  private lastSpan(p: number): (SegmentSpan & { firstSequence: number }) | undefined {
    for (const { key, value } of this.db(p).getRange({ reverse: true, limit: 1 })) return { ...segmentSpan(value as Uint8Array), firstSequence: key as number }
    return undefined
  }

  partitionInfo(p: number) {
    const last = this.lastSpan(p)
    return {
      partitionId: String(p),
      beginSequenceNumber: this.firstSequence(p) ?? 0,
      lastEnqueuedSequenceNumber: last ? last.firstSequence + last.count - 1 : -1,
      lastEnqueuedOffset: last ? String(last.lastOffset) : '-1',
      lastEnqueuedTimeUtc: last ? new Date(last.lastTime).toISOString() : null,
      isEmpty: !last,
    }
  }

  /** Sequence number the next event will get. */
  endOf(p: number): number {
    const last = this.lastSpan(p)
    return last ? last.firstSequence + last.count : 0
  }

  beginningOf(p: number): number {
    return this.firstSequence(p) ?? this.endOf(p)
  }

  /**
   * First sequence number, from the segment holding `fromSequence` onwards, whose event satisfies
   * `test`. When the index found that segment, it holds the answer: one decode.
   */
  private firstWhere(p: number, fromSequence: number, test: (e: StoredEvent, offset: number) => boolean): number {
    for (const seg of this.segments(p, fromSequence)) {
      const i = seg.events.findIndex((e, j) => test(e, seg.offsets[j]!))
      if (i >= 0) return seg.firstSequence + i
    }
    return this.endOf(p)
  }

  /**
   * Where the index ends: a reader looks on from there only when the index has no answer, which
   * costs a scan only while a shard is still indexing a partition written before the index existed.
   */
  private indexedEnd(p: number): number {
    const last = lastHeader(this.index(p))
    return last ? last.firstSequence + last.count : 0
  }

  /** First sequence number enqueued at or after `timeMs` (strictly after, when not inclusive). */
  sequenceAt(p: number, timeMs: number, inclusive = true): number {
    const hit = firstByTime(this.index(p), timeMs, inclusive)
    return this.firstWhere(p, hit ? hit.firstSequence : this.indexedEnd(p), (e) => (inclusive ? e.t >= timeMs : e.t > timeMs))
  }

  /** First sequence number at or after an Event Hubs offset (strictly after, when not inclusive). */
  sequenceAtOffset(p: number, offset: number, inclusive: boolean): number {
    const hit = firstByOffset(this.index(p), offset, inclusive)
    return this.firstWhere(p, hit ? hit.firstSequence : this.indexedEnd(p), (_e, o) => (inclusive ? o >= offset : o > offset))
  }

  /**
   * Events from `fromSequence` on, as stored: at most `maxCount`, and no more once `maxBytes` of
   * bodies and properties are taken (at least one event), so a read of large events stays small.
   */
  readStored(p: number, fromSequence: number, maxCount: number, maxBytes = Infinity): { sequence: number; offset: number; event: StoredEvent }[] {
    const out: { sequence: number; offset: number; event: StoredEvent }[] = []
    let bytes = 0
    for (const seg of this.segments(p, fromSequence)) {
      for (let i = Math.max(0, fromSequence - seg.firstSequence); i < seg.events.length; i++) {
        if (out.length >= maxCount) return out
        const e = seg.events[i]!
        bytes += storedSize(e)
        if (out.length > 0 && bytes > maxBytes) return out
        out.push({ sequence: seg.firstSequence + i, offset: seg.offsets[i]!, event: e })
      }
    }
    return out
  }

  read(p: number, fromSequence: number, maxCount: number, maxBytes = Infinity): EventJson[] {
    return this.readStored(p, fromSequence, maxCount, maxBytes).map((r) => toEventJson(p, r.sequence, r.offset, r.event))
  }

  /** The offset of one event, for checkpoints. */
  private offsetOf(p: number, sequence: number): number | undefined {
    for (const seg of this.segments(p, sequence)) {
      const i = sequence - seg.firstSequence
      return i >= 0 && i < seg.events.length ? seg.offsets[i] : undefined
    }
    return undefined
  }

  consumerGroups(): string[] {
    return [DEFAULT_CONSUMER_GROUP, ...((this.store.meta.get(this.groupsKey) as string[] | undefined) ?? [])]
  }

  checkConsumerGroup(name: string): void {
    if (!this.consumerGroups().includes(name)) throw new HubError(404000, `consumer group ${name} does not exist`)
  }

  async createConsumerGroup(name: string): Promise<void> {
    if (!CONSUMER_GROUP_NAME.test(name)) throw new HubError(400004, 'consumer group names are 1-50 letters, digits, . _ - $')
    const groups = this.consumerGroups()
    if (groups.includes(name)) return
    if (groups.length >= MAX_CONSUMER_GROUPS) throw new HubError(400004, `a hub has at most ${MAX_CONSUMER_GROUPS} consumer groups`)
    await this.write(() => this.store.meta.put(this.groupsKey, [...groups.slice(1), name]))
  }

  async deleteConsumerGroup(name: string): Promise<void> {
    if (name === DEFAULT_CONSUMER_GROUP) throw new HubError(400004, '$Default cannot be deleted')
    this.checkConsumerGroup(name)
    await this.write(() => Promise.all([
      this.store.meta.put(this.groupsKey, this.consumerGroups().slice(1).filter((g) => g !== name)),
      ...Array.from({ length: this.partitions }, (_, p) => this.store.checkpoints.remove(this.checkpointKey(name, p))),
    ]))
  }

  /** A routing log endpoint removed: its consumer groups and checkpoints go with it. */
  async forget(): Promise<void> {
    if (this.builtIn) return
    const groups = this.consumerGroups()
    await this.write(() => Promise.all([
      this.store.meta.remove(this.groupsKey),
      ...groups.flatMap((g) => Array.from({ length: this.partitions }, (_, p) => this.store.checkpoints.remove(this.checkpointKey(g, p)))),
    ]))
  }

  checkpoint(group: string, p: number): Checkpoint | undefined {
    return this.store.checkpoints.get(this.checkpointKey(group, p)) as Checkpoint | undefined
  }

  async setCheckpoint(group: string, p: number, sequenceNumber: number): Promise<Checkpoint> {
    if (!Number.isInteger(sequenceNumber) || sequenceNumber < 0 || sequenceNumber >= this.endOf(p)) {
      throw new HubError(400004, `sequenceNumber must be an event of partition ${p} (0..${this.endOf(p) - 1})`)
    }
    const offset = this.offsetOf(p, sequenceNumber)
    const cp: Checkpoint = { sequenceNumber, offset: offset === undefined ? '-1' : String(offset), updatedTimeUtc: new Date().toISOString() }
    await this.write(() => this.store.checkpoints.put(this.checkpointKey(group, p), cp))
    return cp
  }

  /**
   * Where a reader starts: `earliest`, `latest` (only new events), `checkpoint` (after the consumer
   * group's checkpoint, else earliest), a sequence number, or an ISO enqueued time.
   */
  startPosition(p: number, group: string, from: { sequenceNumber?: string | null; enqueuedTime?: string | null; position?: string | null }): number {
    if (from.sequenceNumber != null) {
      const n = Number(from.sequenceNumber)
      if (!Number.isSafeInteger(n) || n < 0) throw new HubError(400004, 'fromSequenceNumber must be a non-negative integer')
      return Math.max(n, this.beginningOf(p))
    }
    if (from.enqueuedTime != null) {
      const t = Date.parse(from.enqueuedTime)
      if (Number.isNaN(t)) throw new HubError(400004, 'fromEnqueuedTime must be an ISO 8601 time')
      return this.sequenceAt(p, t)
    }
    switch (from.position ?? 'checkpoint') {
      case 'earliest': return this.beginningOf(p)
      case 'latest': return this.endOf(p)
      case 'checkpoint': {
        const cp = this.checkpoint(group, p)
        return cp ? Math.max(cp.sequenceNumber + 1, this.beginningOf(p)) : this.beginningOf(p)
      }
      default: throw new HubError(400004, 'from must be earliest, latest or checkpoint')
    }
  }
}
