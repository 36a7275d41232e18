// One partition of the built-in endpoint, written by the one shard that owns it: an append-only
// log of segments (see src/events/segment-codec.ts) and their index (src/events/segment-index.ts).
// Being the only writer, it keeps the next sequence number, byte offset and enqueued time in memory.
//
// A segment and its index keys always land in the same transaction: lmdb-js (write.js, with
// eventTurnBatching on, the default) opens a batch at the first async write of an event-loop turn
// and closes it in a setImmediate; every write queued until then, to any database of the
// environment, is in that batch, and the write thread holds the transaction open until the batch
// ends (writer.cpp waits while the batch's START_BLOCK is unmatched). Only a synchronous transaction
// on the same thread can commit a batch early, and none can run between the puts of one append.
// Opening a log still indexes any segments its index lacks: logs written before the index existed.
// An outbox (endpoint-outbox.ts) is read only by sequence number: it has no index.
import type { Database } from 'lmdb'
import type { PartitionAppender } from '../src/storage/partition-appender.js'
import { encodeSegment, nextOffset, segmentSpan, type RawEvent } from '../src/events/segment-codec.js'
import { headersBefore, lastHeader, putHeader, removeHeader, type SegmentHeader } from '../src/events/segment-index.js'

/** A segment holds at most this many events or body bytes (one event may exceed the byte cap alone). */
export const MAX_SEGMENT_EVENTS = 1000
export const MAX_SEGMENT_BODY_BYTES = 1024 * 1024

/** Where the log stood: `rewind` returns to it. */
export interface LogMark {
  readonly sequence: number
  readonly offset: number
  readonly time: number
}

export class PartitionLog implements PartitionAppender {
  private nextSequence = 0
  private nextByteOffset = 0
  /** enqueued time of the newest event: no event is stored with an earlier one */
  private newestTime = Number.NEGATIVE_INFINITY
  /** Settles when the segments this log found unindexed at open are indexed (how many there were). */
  readonly indexBuilt: Promise<number>

  /** `emptyNextSequence`: where numbering goes on when every segment was removed (an outbox trims all it delivered) */
  constructor(readonly id: number, protected readonly segments: Database, private readonly index: Database | undefined, emptyNextSequence = 0) {
    for (const { key, value } of segments.getRange({ reverse: true, limit: 1 })) {
      const span = segmentSpan(value as Uint8Array)
      this.nextSequence = (key as number) + span.count
      this.nextByteOffset = span.endOffset
    }
    this.nextSequence = Math.max(this.nextSequence, emptyNextSequence)
    this.indexBuilt = index ? this.indexUnindexedSegments(index) : Promise.resolve(0)
    // a failed build is retried at the next open; whoever needs the index awaits indexBuilt
    this.indexBuilt.catch(() => undefined)
  }

  get lastSequenceNumber(): number { return this.nextSequence - 1 }

  /** Where the next append starts: its first sequence number and byte offset. */
  get next(): { sequence: number; offset: number } { return { sequence: this.nextSequence, offset: this.nextByteOffset } }

  /** Where the log stands now, to `rewind` to if the appends after it are not committed. */
  mark(): LogMark { return { sequence: this.nextSequence, offset: this.nextByteOffset, time: this.newestTime } }

  /**
   * Forgets the appends made since `mark`, so the next append reuses their sequence numbers and
   * offsets. Only for appends whose commit failed (all of them since the mark): a committed segment
   * would be overwritten.
   */
  rewind(mark: LogMark): void {
    if (mark.sequence > this.nextSequence) throw new Error(`partition ${this.id}: cannot rewind forward to sequence ${mark.sequence}`)
    this.nextSequence = mark.sequence
    this.nextByteOffset = mark.offset
    this.newestTime = mark.time
  }

  /**
   * Queues the events, as segments of at most MAX_SEGMENT_EVENTS events or MAX_SEGMENT_BODY_BYTES,
   * with their index keys, in the current write; settles when LMDB has committed them.
   * An event enqueued before the newest stored one (the clock went back) is stored with the newest
   * one's time, so times never decrease along a partition, which the time index relies on. Such an
   * event is replaced in `events` by a copy with the stored time: the caller then holds what was
   * stored, and other logs the same event was routed to are unaffected.
   */
  append(events: RawEvent[]): Promise<boolean> {
    const commits: Promise<boolean>[] = []
    let start = 0
    while (start < events.length) {
      const firstOffset = this.nextByteOffset
      let lastOffset = firstOffset
      let bodyBytes = 0
      let end = start
      for (; end < events.length && end - start < MAX_SEGMENT_EVENTS; end++) {
        let e = events[end]!
        // property bags count too: a small body can carry a 64 KB bag
        if (end > start && bodyBytes + e.body.length + e.bag.length > MAX_SEGMENT_BODY_BYTES) break
        if (e.t < this.newestTime) events[end] = e = { ...e, t: this.newestTime }
        else this.newestTime = e.t
        bodyBytes += e.body.length + e.bag.length
        lastOffset = this.nextByteOffset
        this.nextByteOffset = nextOffset(this.nextByteOffset, e.body.length)
      }
      const segment = start === 0 && end === events.length ? events : events.slice(start, end)
      const header: SegmentHeader = {
        firstSequence: this.nextSequence, count: end - start, firstTime: segment[0]!.t, lastTime: this.newestTime, firstOffset, lastOffset,
      }
      commits.push(this.segments.put(header.firstSequence, encodeSegment(firstOffset, segment)))
      if (this.index) commits.push(...putHeader(this.index, header))
      this.nextSequence += header.count
      start = end
    }
    // every promise is awaited: a failed commit rejects them all, and none may go unhandled
    return Promise.all(commits).then(() => true)
  }

  /**
   * Drops whole segments whose newest event is older than the cutoff, with their index keys; the
   * newest segment stays. Rejects if the commit fails.
   */
  async trim(olderThanMs: number, maxSegmentsPerRun = 1000): Promise<number> {
    const newest = [...this.segments.getKeys({ reverse: true, limit: 1 })][0]
    const removals: Promise<boolean>[] = []
    let removed = 0
    if (!this.index) {
      // an outbox: only what its receiver never took is here, from the oldest on
      for (const { key, value } of this.segments.getRange({ limit: maxSegmentsPerRun })) {
        if (key === newest || segmentSpan(value as Uint8Array).maxTime >= olderThanMs) break
        removals.push(this.segments.remove(key))
        removed++
      }
      await Promise.all(removals)
      return removed
    }
    for (const h of headersBefore(this.index, olderThanMs, maxSegmentsPerRun)) {
      // never the newest segment: it carries the next sequence number across restarts
      if (h.firstSequence === newest) break
      removals.push(this.segments.remove(h.firstSequence), ...removeHeader(this.index, h))
      removed++
    }
    await Promise.all(removals)
    return removed
  }

  /**
   * Indexes the segments after the newest indexed one: every segment of a log written before the
   * index existed, or a tail the index lost. Times that went back in such old segments are indexed
   * as the latest time before them, as the index needs.
   */
  private indexUnindexedSegments(index: Database): Promise<number> {
    const last = lastHeader(index)
    let floorTime = last?.lastTime ?? Number.NEGATIVE_INFINITY
    const puts: Promise<boolean>[] = []
    let indexed = 0
    for (const { key, value } of this.segments.getRange({ start: last ? last.firstSequence + last.count : 0 })) {
      const span = segmentSpan(value as Uint8Array)
      if (span.count === 0) continue // older code could store an empty segment; the next append replaces it
      const header: SegmentHeader = {
        firstSequence: key as number, count: span.count, firstTime: Math.max(floorTime, span.firstTime),
        lastTime: Math.max(floorTime, span.maxTime), firstOffset: span.firstOffset, lastOffset: span.lastOffset,
      }
      puts.push(...putHeader(index, header))
      floorTime = header.lastTime
      indexed++
    }
    this.newestTime = floorTime
    return Promise.all(puts).then(() => indexed)
  }
}
