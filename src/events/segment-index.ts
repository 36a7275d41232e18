// The index of a partition's segments: one header per segment, under two keys, so a start position
// by enqueued time or by offset is one B-tree seek (getRange with limit 1) instead of a scan. The
// partition's writer puts and removes headers together with their segments; readers only look up.
//
// Key layout (ordered-binary arrays, compared element by element):
//   [BY_TIME, lastTime, firstSequence]  ties of lastTime (same millisecond, clamped clock) by segment
//   [BY_OFFSET, lastOffset]             offsets rise strictly, so the last one alone is unique
// Both orders equal sequence order because the writer keeps enqueued times non-decreasing.
import type { Database } from 'lmdb'

/** One segment as the index knows it: enough to find it by time or offset without decoding it. */
export interface SegmentHeader {
  firstSequence: number
  count: number
  /** enqueued times (ms) of its first and last events; never below an earlier segment's lastTime */
  firstTime: number
  lastTime: number
  /** Event Hubs offsets of its first and last events */
  firstOffset: number
  lastOffset: number
}

const BY_TIME = 0
const BY_OFFSET = 1
/** After every [family, x, …] key with the same x: the start of a strictly-greater search. */
const AFTER = Number.POSITIVE_INFINITY

const timeKey = (h: SegmentHeader) => [BY_TIME, h.lastTime, h.firstSequence]
const offsetKey = (h: SegmentHeader) => [BY_OFFSET, h.lastOffset]

/** Queues both keys of a segment; their promises settle with the commit that holds them. */
export function putHeader(index: Database, h: SegmentHeader): Promise<boolean>[] {
  return [index.put(timeKey(h), h), index.put(offsetKey(h), h)]
}

export function removeHeader(index: Database, h: SegmentHeader): Promise<boolean>[] {
  return [index.remove(timeKey(h)), index.remove(offsetKey(h))]
}

function first(index: Database, family: number, value: number, inclusive: boolean): SegmentHeader | undefined {
  const start = inclusive ? [family, value] : [family, value, AFTER]
  for (const { value: h } of index.getRange({ start, end: [family + 1], limit: 1 })) return h as SegmentHeader
  return undefined
}

/** The first segment whose last event was enqueued at or after `timeMs` (after it, when not inclusive). */
export function firstByTime(index: Database, timeMs: number, inclusive: boolean): SegmentHeader | undefined {
  return first(index, BY_TIME, timeMs, inclusive)
}

/** The first segment whose last event's offset is at least `offset` (greater, when not inclusive). */
export function firstByOffset(index: Database, offset: number, inclusive: boolean): SegmentHeader | undefined {
  return first(index, BY_OFFSET, offset, inclusive)
}

/** The newest indexed segment. */
export function lastHeader(index: Database): SegmentHeader | undefined {
  for (const { value } of index.getRange({ start: [BY_OFFSET + 1], end: [BY_OFFSET], reverse: true, limit: 1 })) return value as SegmentHeader
  return undefined
}

/** Up to `limit` of the oldest segments whose last event is older than `timeMs`, oldest first. */
export function headersBefore(index: Database, timeMs: number, limit: number): SegmentHeader[] {
  return [...index.getRange({ start: [BY_TIME], end: [BY_TIME, timeMs], limit })].map(({ value }) => value as SegmentHeader)
}
