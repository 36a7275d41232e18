// The segment index of a partition (real PartitionLog and BuiltInEndpoint on LMDB in a temp dir):
// start positions by time and offset are exact at a million events and cost a constant number of
// segment decodes and LMDB reads; the writer keeps the index right through clamped clocks, trims,
// old data directories, split appends and rewinds after a failed commit.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Database } from 'lmdb'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MAX_SEGMENT_BODY_BYTES, MAX_SEGMENT_EVENTS, PartitionLog } from '../shards/partition-log.js'
import { BuiltInEndpoint } from '../src/events/built-in-endpoint.js'
import { decodeSegment, encodeSegment, nextOffset, type RawEvent, type Sender } from '../src/events/segment-codec.js'
import { firstByTime, lastHeader } from '../src/events/segment-index.js'
import { openHubStore, type HubStore } from '../src/store/hub-store.js'

const PARTITIONS = 8
const dir = mkdtempSync(join(tmpdir(), 'hyperhub-index-'))
const store = openHubStore(dir)
afterAll(async () => { await store.close(); rmSync(dir, { recursive: true, force: true }) })

const sender: Sender = { deviceId: 'idx-dev', generationId: 'g', authMethod: 'sas' }
const BODIES = [0, 1, 2, 3, 4].map((n) => new Uint8Array(n).fill(65))
const event = (t: number, body: Uint8Array = BODIES[1]!): RawEvent => ({ t, sender, bag: '', extra: null, body })

/** LMDB reads made through a store: every get, getKeys and getRange on any of its databases. */
function countingStore(inner: HubStore): { store: HubStore; reads: { count: number } } {
  const reads = { count: 0 }
  const wrap = (db: Database): Database => new Proxy(db, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target) as unknown
      if (typeof v !== 'function') return v
      if (prop === 'get' || prop === 'getKeys' || prop === 'getRange') return (...args: unknown[]) => { reads.count++; return (v as (...a: unknown[]) => unknown).apply(target, args) }
      return (v as (...a: unknown[]) => unknown).bind(target)
    },
  })
  return {
    reads,
    store: {
      ...inner,
      partition: (p) => wrap(inner.partition(p)),
      partitionIndex: (p) => wrap(inner.partitionIndex(p)),
      endpointPartition: (n, p) => wrap(inner.endpointPartition(n, p)),
      endpointPartitionIndex: (n, p) => wrap(inner.endpointPartitionIndex(n, p)),
    },
  }
}

/** A cold reader (empty cache) and what one call on it cost. */
function measured<T>(read: (e: BuiltInEndpoint) => T, name = 'events'): { value: T; decodes: number; reads: number } {
  const { store: counted, reads } = countingStore(store)
  const endpoint = new BuiltInEndpoint(counted, PARTITIONS, name)
  const value = read(endpoint)
  return { value, decodes: endpoint.decodedSegments, reads: reads.count }
}

/** Index of the first element of the rising `values` at or above `x` (above it, when not inclusive). */
function lowerBound(values: ArrayLike<number>, x: number, inclusive: boolean): number {
  let lo = 0
  let hi = values.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (inclusive ? values[mid]! >= x : values[mid]! > x) hi = mid
    else lo = mid + 1
  }
  return lo
}

const storedTimes = (e: BuiltInEndpoint, p: number, from = 0, max = 1000) => e.readStored(p, from, max).map((r) => r.event.t)

describe('a partition of 1,000,000 events', () => {
  const P = 0
  const N = 1_000_000
  const APPEND = 10_000
  const BASE = Date.UTC(2024, 0, 1)
  // a stretch of one enqueued time across several segments, as a clock held back by clamping leaves
  const PLATEAU = { from: 400_500, to: 404_200 }
  const times = new Float64Array(N)
  const offsets = new Float64Array(N)

  beforeAll(async () => {
    const log = new PartitionLog(P, store.partition(P), store.partitionIndex(P))
    let t = BASE
    let offset = 0
    for (let start = 0; start < N; start += APPEND) {
      const events: RawEvent[] = new Array(APPEND)
      for (let i = start; i < start + APPEND; i++) {
        if (i % 3 === 0 && (i < PLATEAU.from || i >= PLATEAU.to)) t++ // about three events per millisecond
        const body = BODIES[i % BODIES.length]!
        times[i] = t
        offsets[i] = offset
        offset = nextOffset(offset, body.length)
        events[i - start] = event(t, body)
      }
      await log.append(events)
    }
  }, 300_000)

  it('stores the events as segments of at most MAX_SEGMENT_EVENTS', () => {
    expect(store.partition(P).getStats()).toMatchObject({ entryCount: N / MAX_SEGMENT_EVENTS })
    expect(lastHeader(store.partitionIndex(P))).toMatchObject({ firstSequence: N - MAX_SEGMENT_EVENTS, count: MAX_SEGMENT_EVENTS, lastOffset: offsets[N - 1] })
  })

  it.each<[string, () => number]>([
    ['before the first event', () => BASE - 60_000],
    ['the first event', () => times[0]!],
    ['a segment boundary', () => times[123 * MAX_SEGMENT_EVENTS]!],
    ['the middle', () => times[N / 2]!],
    ['a time the last events of several segments share', () => times[PLATEAU.from]!],
    ['between two milliseconds', () => times[N / 2]! + 0.5],
    ['the last event', () => times[N - 1]!],
    ['after the last event', () => times[N - 1]! + 60_000],
  ])('by enqueued time, %s: exact, for at most two decodes', (_label, at) => {
    for (const inclusive of [true, false]) {
      const r = measured((e) => e.sequenceAt(P, at(), inclusive))
      expect(r.value, `${inclusive ? '>=' : '>'} ${at()}`).toBe(lowerBound(times, at(), inclusive))
      expect(r.decodes).toBeLessThanOrEqual(2)
      expect(r.reads).toBeLessThanOrEqual(6)
    }
  })

  it.each<[string, () => number]>([
    ['the first event', () => 0],
    ['a segment boundary', () => offsets[777 * MAX_SEGMENT_EVENTS]!],
    ['the middle', () => offsets[N / 2 + 1]!],
    ['between two events', () => offsets[N / 2 + 1]! + 1],
    ['the last event', () => offsets[N - 1]!],
    ['after the last event', () => offsets[N - 1]! + 1000],
  ])('by offset, %s: exact, for at most two decodes', (_label, at) => {
    for (const inclusive of [true, false]) {
      const r = measured((e) => e.sequenceAtOffset(P, at(), inclusive))
      expect(r.value, `${inclusive ? '>=' : '>'} ${at()}`).toBe(lowerBound(offsets, at(), inclusive))
      expect(r.decodes).toBeLessThanOrEqual(2)
      expect(r.reads).toBeLessThanOrEqual(6)
    }
  })

  it('a REST start position by enqueued time takes the same path', () => {
    const at = times[654_321]!
    const r = measured((e) => e.startPosition(P, '$Default', { enqueuedTime: new Date(at).toISOString() }))
    expect(r.value).toBe(lowerBound(times, at, true))
    expect(r.decodes).toBeLessThanOrEqual(2)
  })
})

describe('what keeps the index right', () => {
  it('an event enqueued before the newest one (the clock went back) is stored with the newest time', async () => {
    const P = 1
    const log = new PartitionLog(P, store.partition(P), store.partitionIndex(P))
    await log.append([event(1000), event(2000)])
    const late = event(1500)
    const batch = [late, event(2500), event(1800)]
    await log.append(batch)
    expect(late.t).toBe(1500) // the caller's event (maybe routed elsewhere too) is not changed
    expect(batch.map((e) => e.t)).toEqual([2000, 2500, 2500])
    const reader = new BuiltInEndpoint(store, PARTITIONS)
    expect(storedTimes(reader, P)).toEqual([1000, 2000, 2000, 2500, 2500])
    expect(reader.sequenceAt(P, 1600)).toBe(1)
    expect(reader.sequenceAt(P, 2000, false)).toBe(3)
    // the newest time survives a restart of the writer
    await new PartitionLog(P, store.partition(P), store.partitionIndex(P)).append([event(100)])
    reader.refresh()
    expect(storedTimes(reader, P, 5)).toEqual([2500])
  })

  it('trim removes the index keys with their segments and keeps the newest segment', async () => {
    const P = 2
    const log = new PartitionLog(P, store.partition(P), store.partitionIndex(P))
    for (let s = 1; s <= 5; s++) await log.append([event(s * 1000), event(s * 1000 + 500)])
    expect(await log.trim(3600)).toBe(3)
    const index = store.partitionIndex(P)
    expect(index.getStats()).toMatchObject({ entryCount: 2 * 2 })
    expect(firstByTime(index, 0, true)).toMatchObject({ firstSequence: 6 })
    const reader = new BuiltInEndpoint(store, PARTITIONS)
    expect(reader.beginningOf(P)).toBe(6)
    expect(reader.sequenceAt(P, 0)).toBe(6)
    expect(reader.sequenceAtOffset(P, 0, true)).toBe(6)
    expect(await log.trim(Number.MAX_SAFE_INTEGER)).toBe(1)
    expect([...store.partition(P).getKeys()]).toEqual([8])
    expect(index.getStats()).toMatchObject({ entryCount: 2 })
  })

  it('a trim whose commit fails rejects, for the caller to catch', async () => {
    const P = 7
    const failing = new Proxy(store.partition(P), {
      get(target, prop) {
        if (prop === 'remove') return () => Promise.reject(new Error('disk full'))
        const v = Reflect.get(target, prop, target) as unknown
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
      },
    })
    const writer = new PartitionLog(P, store.partition(P), store.partitionIndex(P))
    await writer.append([event(1000)])
    await writer.append([event(9000)])
    const log = new PartitionLog(P, failing, store.partitionIndex(P))
    await expect(log.trim(Number.MAX_SAFE_INTEGER)).rejects.toThrow('disk full')
  })

  it('a partition written before the index existed is indexed once, when its log opens', async () => {
    const P = 3
    const segments = store.partition(P)
    const times: number[] = []
    let offset = 0
    let lastOffset = 0
    for (let s = 0; s < 40; s++) {
      const events: RawEvent[] = []
      // segment 7 went back in time, before the first segment: older code did not clamp
      for (let i = 0; i < 50; i++) events.push(event(100_000 + (s === 7 ? -1 : s) * 100 + i, BODIES[i % 3]))
      segments.put(s * 50, encodeSegment(offset, events))
      for (const e of events) { times.push(e.t); lastOffset = offset; offset = nextOffset(offset, e.body.length) }
    }
    await segments.committed
    const firstAtOrAfter = (t: number) => { const i = times.findIndex((x) => x >= t); return i < 0 ? times.length : i }
    // not indexed yet: still right, by scanning
    const before = measured((e) => e.sequenceAt(P, 100_000 + 20 * 100 + 7))
    expect(before.value).toBe(firstAtOrAfter(100_000 + 20 * 100 + 7))
    expect(before.decodes).toBeGreaterThan(10)

    const log = new PartitionLog(P, segments, store.partitionIndex(P))
    expect(await log.indexBuilt).toBe(40)
    for (const t of [0, 99_940, 100_000 + 7 * 100 + 10, 100_000 + 20 * 100 + 7, 100_000 + 39 * 100 + 49, 1e9]) {
      const r = measured((e) => e.sequenceAt(P, t))
      expect(r.value, `>= ${t}`).toBe(firstAtOrAfter(t))
      expect(r.decodes).toBeLessThanOrEqual(2)
    }
    expect(measured((e) => e.sequenceAtOffset(P, lastOffset, true)).value).toBe(times.length - 1)
    // once: a second open finds nothing to index, and appends go on where the old data ended
    const reopened = new PartitionLog(P, segments, store.partitionIndex(P))
    expect(await reopened.indexBuilt).toBe(0)
    expect(reopened.next).toEqual({ sequence: 2000, offset })
    await reopened.append([event(50)])
    const appended = measured((e) => e.readStored(P, 2000, 1)).value[0]!
    expect(appended).toMatchObject({ sequence: 2000, offset, event: { t: 100_000 + 39 * 100 + 49 } })
    expect(measured((e) => e.sequenceAtOffset(P, offset, true)).value).toBe(2000)
  })

  it('a large append is split into bounded segments, with dense sequence numbers and offsets', async () => {
    const P = 4
    const log = new PartitionLog(P, store.partition(P), store.partitionIndex(P))
    await log.append(Array.from({ length: 2500 }, (_, i) => event(1000 + i, BODIES[i % 5])))
    const big = new Uint8Array(200 * 1024)
    await log.append(Array.from({ length: 10 }, (_, i) => event(5000 + i, big)))
    const counts = [...store.partition(P).getRange()].map(({ key, value }) => [key, decodeSegment(key as number, value as Uint8Array).events.length])
    const perBig = Math.floor(MAX_SEGMENT_BODY_BYTES / big.length)
    expect(counts).toEqual([[0, 1000], [1000, 1000], [2000, 500], [2500, perBig], [2500 + perBig, 10 - perBig]])
    const reader = new BuiltInEndpoint(store, PARTITIONS)
    const read = reader.readStored(P, 0, 3000)
    expect(read.map((r) => r.sequence)).toEqual(Array.from({ length: 2510 }, (_, i) => i))
    let offset = 0
    for (const r of read) { expect(r.offset).toBe(offset); offset = nextOffset(offset, r.event.b.length) }
    expect(reader.sequenceAtOffset(P, read[2504]!.offset, true)).toBe(2504)
    expect(reader.sequenceAt(P, 1999, false)).toBe(1000)
  })

  it('a routing log endpoint has its own index', async () => {
    const P = 5
    const log = new PartitionLog(P, store.endpointPartition('Archive', P), store.endpointPartitionIndex('Archive', P))
    for (let s = 0; s < 30; s++) await log.append(Array.from({ length: 10 }, (_, i) => event(7000 + s * 10 + i)))
    const r = measured((e) => e.sequenceAt(P, 7000 + 215, false), 'Archive')
    expect(r.value).toBe(216)
    expect(r.decodes).toBeLessThanOrEqual(2)
    expect(measured((e) => e.sequenceAtOffset(P, 2 * 150, true), 'Archive').value).toBe(150)
  })

  it('rewind after a failed commit reuses the sequence numbers and offsets it took', async () => {
    const P = 6
    let failing = false
    const fail = <T extends object>(db: T): T => new Proxy(db, {
      get(target, prop) {
        if (failing && prop === 'put') return () => Promise.reject(new Error('commit failed'))
        const v = Reflect.get(target, prop, target) as unknown
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
      },
    })
    const log = new PartitionLog(P, fail(store.partition(P)), fail(store.partitionIndex(P)))
    await log.append([event(1000), event(1001), event(1002)])
    const mark = log.mark()
    expect(mark).toEqual({ sequence: 3, offset: 3 * 2, time: 1002 })
    failing = true
    await expect(log.append([event(2000), event(2001)])).rejects.toThrow('commit failed')
    expect(log.next).toEqual({ sequence: 5, offset: 5 * 2 })
    log.rewind(mark)
    expect(log.next).toEqual({ sequence: 3, offset: 3 * 2 })
    expect(() => log.rewind({ sequence: 9, offset: 18, time: 0 })).toThrow(/forward/)
    failing = false
    await log.append([event(1500), event(1501)])
    const reader = new BuiltInEndpoint(store, PARTITIONS)
    expect(reader.readStored(P, 0, 10).map((r) => [r.sequence, r.offset, r.event.t])).toEqual([
      [0, 0, 1000], [1, 2, 1001], [2, 4, 1002], [3, 6, 1500], [4, 8, 1501],
    ])
    expect(reader.sequenceAtOffset(P, 7, true)).toBe(4)
  })
})
