// One partition of the built-in endpoint: an append-only log keyed by sequence number. Only the
// owning shard appends, so the next sequence number and byte offset live in memory.
import type { Database } from 'lmdb'

/** What LMDB stores per event (short keys: this is written for every message). */
export interface StoredEvent {
  /** byte offset in the partition, as Event Hubs counts it */
  o: number
  /** enqueued time, ms since the epoch */
  t: number
  /** system properties */
  s: Record<string, string>
  /** application properties */
  p: Record<string, string>
  /** body */
  b: Uint8Array
}

export class PartitionLog {
  private nextSequence: number
  private nextOffset: number

  constructor(readonly id: number, private readonly db: Database) {
    let last: { key: number; value: StoredEvent } | undefined
    for (const entry of db.getRange({ reverse: true, limit: 1 })) last = entry as { key: number; value: StoredEvent }
    this.nextSequence = last ? last.key + 1 : 0
    this.nextOffset = last ? last.value.o + last.value.b.length + 1 : 0
  }

  get lastSequenceNumber(): number { return this.nextSequence - 1 }

  /** Queues the event in the current write batch; the promise settles when LMDB has committed it. */
  append(event: Omit<StoredEvent, 'o'>): Promise<boolean> {
    const stored: StoredEvent = { o: this.nextOffset, ...event }
    this.nextOffset += event.b.length + 1
    return this.db.put(this.nextSequence++, stored)
  }

  /** Drops events older than the retention window, a bounded number per call. */
  async trim(olderThanMs: number, maxPerRun = 10_000): Promise<number> {
    let removed = 0
    for (const { key, value } of this.db.getRange({ limit: maxPerRun })) {
      if ((value as StoredEvent).t >= olderThanMs || (key as number) >= this.nextSequence - 1) break
      this.db.remove(key)
      removed++
    }
    if (removed > 0) await this.db.committed
    return removed
  }
}
