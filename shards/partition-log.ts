// One partition of the built-in endpoint, written by the one shard that owns it: an append-only
// log of segments (see src/events/segment-codec.ts). Being the only writer, it keeps the next
// sequence number and byte offset in memory.
import type { Database } from 'lmdb'
import { decodeSegment, encodeSegment, nextOffset, type StoredEvent } from '../src/events/segment-codec.js'

export class PartitionLog {
  private nextSequence = 0
  private nextByteOffset = 0

  constructor(readonly id: number, private readonly db: Database) {
    for (const { key, value } of db.getRange({ reverse: true, limit: 1 })) {
      const last = decodeSegment(key as number, value as Uint8Array)
      const n = last.events.length
      this.nextSequence = last.firstSequence + n
      this.nextByteOffset = n ? nextOffset(last.offsets[n - 1]!, last.events[n - 1]!) : 0
    }
  }

  get lastSequenceNumber(): number { return this.nextSequence - 1 }

  /** Queues the events as one segment in the current write; settles when LMDB has committed it. */
  append(events: StoredEvent[]): Promise<boolean> {
    const first = this.nextSequence
    const bytes = encodeSegment(this.nextByteOffset, events)
    for (const e of events) this.nextByteOffset = nextOffset(this.nextByteOffset, e)
    this.nextSequence += events.length
    return this.db.put(first, bytes)
  }

  /** Drops whole segments whose newest event is older than the cutoff; the newest segment stays. */
  async trim(olderThanMs: number, maxSegmentsPerRun = 1000): Promise<number> {
    let removed = 0
    const keys: number[] = []
    for (const { key, value } of this.db.getRange({ limit: maxSegmentsPerRun + 1 })) {
      const seg = decodeSegment(key as number, value as Uint8Array)
      if (seg.events[seg.events.length - 1]!.t >= olderThanMs) break
      keys.push(key as number)
    }
    // never the newest segment: it carries the next sequence number across restarts
    const newest = [...this.db.getKeys({ reverse: true, limit: 1 })][0]
    for (const k of keys) {
      if (k === newest) break
      this.db.remove(k)
      removed++
    }
    if (removed > 0) await this.db.committed
    return removed
  }
}
