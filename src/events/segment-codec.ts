// A partition is stored as segments: one LMDB entry per commit, keyed by the sequence number of its
// first event. One put per commit instead of one per message is what lets a commit carry hundreds of
// messages for the price of a memcpy (see bench/RESULTS.md).
import { Packr } from 'msgpackr'

export interface StoredEvent {
  /** enqueued time, ms since the epoch */
  t: number
  /** system properties */
  s: Record<string, string>
  /** application properties */
  p: Record<string, string>
  /** body */
  b: Uint8Array
}

export interface DecodedSegment {
  firstSequence: number
  /** byte offset (as Event Hubs counts it) of each event */
  offsets: number[]
  events: StoredEvent[]
}

const packr = new Packr({ useRecords: false })

/** Event Hubs offsets grow by the stored size; ours by body length + 1, monotonic as required. */
export function nextOffset(offset: number, e: StoredEvent): number {
  return offset + e.b.length + 1
}

export function encodeSegment(firstOffset: number, events: StoredEvent[]): Uint8Array {
  const rows = new Array(events.length)
  for (let i = 0; i < events.length; i++) {
    const e = events[i]!
    rows[i] = [e.t, e.s, e.p, e.b]
  }
  // copy out of msgpackr's reusable buffer: LMDB keeps the bytes until the commit
  return new Uint8Array(packr.pack([firstOffset, rows]))
}

export function decodeSegment(firstSequence: number, bytes: Uint8Array): DecodedSegment {
  const [firstOffset, rows] = packr.unpack(bytes) as [number, [number, Record<string, string>, Record<string, string>, Uint8Array][]]
  const events: StoredEvent[] = new Array(rows.length)
  const offsets: number[] = new Array(rows.length)
  let offset = firstOffset
  for (let i = 0; i < rows.length; i++) {
    const [t, s, p, b] = rows[i]!
    const e = { t, s, p, b }
    events[i] = e
    offsets[i] = offset
    offset = nextOffset(offset, e)
  }
  return { firstSequence, offsets, events }
}
