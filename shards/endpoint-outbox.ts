// The outbox of one partition of a storage or webhook endpoint: a log in the built-in endpoint's
// format (LMDB `outbox.{kind}.{name}.{p}`), appended through the shard's group commit, so it is in
// the same transaction as the message's other writes and its PUBACK covers the endpoint too. A
// deliverer reads it from its cursor in bounded slices and removes what it delivered.
import type { Database } from 'lmdb'
import { decodeSegment, segmentSpan, type RawEvent, type StoredEvent } from '../src/events/segment-codec.js'
import { PartitionLog } from './partition-log.js'

/** Outbox segments stay small (one commit may hold thousands of messages): a reader decodes one at a time. */
export const OUTBOX_SEGMENT_EVENTS = 256
export const OUTBOX_SEGMENT_BYTES = 1024 * 1024

export class OutboxLog extends PartitionLog {
  private isRetired = false

  /**
   * `nextToDeliver`: the deliverer's cursor, where numbering goes on if everything was delivered and
   * trimmed. `committed` runs after each commit that added to this outbox (it wakes the deliverer).
   */
  constructor(id: number, db: Database, nextToDeliver: number, private readonly committed: () => void) {
    super(id, db, undefined, nextToDeliver)
  }

  get database(): Database { return this.segments }

  /** The endpoint was removed: what the shard still has queued for it is dropped, not written to a DB being dropped. */
  retire(): void { this.isRetired = true }

  /** Queues the events as segments of bounded size in the current write; settles when LMDB committed them. */
  override append(events: RawEvent[]): Promise<boolean> {
    if (this.isRetired) return Promise.resolve(true)
    const puts: Promise<boolean>[] = []
    let start = 0
    let bytes = 0
    for (let i = 0; i < events.length; i++) {
      const size = events[i]!.body.length + events[i]!.bag.length
      if (i > start && (i - start >= OUTBOX_SEGMENT_EVENTS || bytes + size > OUTBOX_SEGMENT_BYTES)) {
        puts.push(super.append(events.slice(start, i)))
        start = i
        bytes = 0
      }
      bytes += size
    }
    puts.push(super.append(start === 0 ? events : events.slice(start)))
    const done = puts.length === 1 ? puts[0]! : Promise.all(puts).then((r) => r.every(Boolean))
    // a failed commit is the shard's to answer (it rejects the acks); the deliverer only wakes on success
    done.then(() => this.committed(), () => {})
    return done
  }
}

export interface OutboxEntry { sequence: number; event: StoredEvent }

/**
 * The events from sequence `from` on, decoding one segment at a time; the caller stops when its
 * slice is full and must not await while iterating (the iterator holds an LMDB read cursor). A gap
 * (a failed commit, or segments retention removed) is skipped.
 */
export function* outboxEvents(db: Database, from: number): Generator<OutboxEntry> {
  let start = from
  for (const { key } of db.getRange({ start: from, reverse: true, limit: 1 })) start = key as number
  for (const { key, value } of db.getRange({ start })) {
    const segment = decodeSegment(key as number, value as Uint8Array)
    for (let i = 0; i < segment.events.length; i++) {
      const sequence = segment.firstSequence + i
      if (sequence >= from) yield { sequence, event: segment.events[i]! }
    }
  }
}

const TRIM_BATCH = 1000

/** Removes the segments wholly before `next` (delivered), a bounded number per transaction. */
export async function trimDelivered(db: Database, next: number): Promise<void> {
  for (let round = 0; round < 1_000_000; round++) {
    const keys = [...db.getKeys({ end: next, limit: TRIM_BATCH })] as number[]
    if (keys.length === 0) return
    const last = keys[keys.length - 1]!
    // the last of them may hold events at or after `next`: it stays until those are delivered too
    const lastValue = db.get(last) as Uint8Array | undefined
    const straddles = lastValue !== undefined && last + segmentSpan(lastValue).count > next
    if (straddles) keys.pop()
    await Promise.all(keys.map((k) => db.remove(k)))
    if (straddles || keys.length < TRIM_BATCH) return
  }
}
