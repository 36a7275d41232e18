// One partition of the built-in endpoint, written by the one shard that owns it: an append-only
// log of segments (see src/events/segment-codec.ts). Being the only writer, it keeps the next
// sequence number and byte offset in memory.
import type { Database } from 'lmdb'
import { encodeSegment, nextOffset, segmentTail, type RawEvent } from '../src/events/segment-codec.js'

export class PartitionLog {
  private nextSequence = 0
  private nextByteOffset = 0

  /** `emptyNextSequence`: where numbering goes on when every segment was removed (an outbox trims all it delivered) */
  constructor(readonly id: number, protected readonly db: Database, emptyNextSequence = 0) {
    for (const { key, value } of db.getRange({ reverse: true, limit: 1 })) {
      const tail = segmentTail(value as Uint8Array)
      this.nextSequence = (key as number) + tail.count
      this.nextByteOffset = tail.endOffset
    }
    this.nextSequence = Math.max(this.nextSequence, emptyNextSequence)
  }

  get lastSequenceNumber(): number { return this.nextSequence - 1 }

  /** Where the next append starts: its first sequence number and byte offset. */
  get next(): { sequence: number; offset: number } { return { sequence: this.nextSequence, offset: this.nextByteOffset } }

  /** Queues the events as one segment in the current write; settles when LMDB has committed it. */
  append(events: RawEvent[]): Promise<boolean> {
    const first = this.nextSequence
    const bytes = encodeSegment(this.nextByteOffset, events)
    for (const e of events) this.nextByteOffset = nextOffset(this.nextByteOffset, e.body.length)
    this.nextSequence += events.length
    return this.db.put(first, bytes)
  }

  /** Drops whole segments whose newest event is older than the cutoff; the newest segment stays. */
  async trim(olderThanMs: number, maxSegmentsPerRun = 1000): Promise<number> {
    const keys: number[] = []
    for (const { key, value } of this.db.getRange({ limit: maxSegmentsPerRun })) {
      if (segmentTail(value as Uint8Array).lastTime >= olderThanMs) break
      keys.push(key as number)
    }
    // never the newest segment: it carries the next sequence number across restarts
    const newest = [...this.db.getKeys({ reverse: true, limit: 1 })][0]
    let removed = 0
    for (const k of keys) {
      if (k === newest) break
      this.db.remove(k)
      removed++
    }
    if (removed > 0) await this.db.committed
    return removed
  }
}
