// Issue 14: the throttles and the daily quota with a clock the test moves (no wall-clock timing):
// the burst served at once, then queueing at the limit, then the backlog's overflow; unit scaling
// and the "higher of" floors; tier changes; metering chunks; the quota and its reset at UTC midnight.
import { describe, expect, it } from 'vitest'
import { ManualClock } from '../src/throttle/clock.js'
import { DailyMeter } from '../src/throttle/daily-meter.js'
import { HubThrottles } from '../src/throttle/hub-throttles.js'
import { ShapedThrottle } from '../src/throttle/shaped-throttle.js'
import { tierLimits, TierError } from '../src/throttle/tiers.js'

function tally(t: ShapedThrottle, n: number): { now: number; queued: number; refused: number; maxWaitMs: number } {
  const out = { now: 0, queued: 0, refused: 0, maxWaitMs: 0 }
  for (let i = 0; i < n; i++) {
    const a = t.admit()
    if (a.kind === 'now') out.now++
    else if (a.kind === 'refused') out.refused++
    else { out.queued++; out.maxWaitMs = Math.max(out.maxWaitMs, a.waitMs) }
  }
  return out
}

describe('ShapedThrottle', () => {
  it('serves a burst of burstSeconds × limit at once, queues the next backlogSeconds × limit, refuses the rest', () => {
    const clock = new ManualClock()
    const t = new ShapedThrottle(100, clock, { burstSeconds: 60, backlogSeconds: 10 })
    expect(tally(t, 6000 + 1000 + 5)).toEqual({ now: 6000, queued: 1000, refused: 5, maxWaitMs: 10_000 })
  })

  it('a queued request waits its share of the backlog: the wait grows by 1/limit per request', () => {
    const clock = new ManualClock()
    const t = new ShapedThrottle(50, clock, { burstSeconds: 1, backlogSeconds: 10 })
    tally(t, 50)
    expect([t.admit(), t.admit(), t.admit()]).toEqual([{ kind: 'queued', waitMs: 20 }, { kind: 'queued', waitMs: 40 }, { kind: 'queued', waitMs: 60 }])
  })

  it('over a minute at twice the limit, once the burst is spent, it admits the limit each second', () => {
    const clock = new ManualClock()
    const t = new ShapedThrottle(100, clock, { burstSeconds: 10, backlogSeconds: 5 })
    const perSecond: number[] = []
    for (let s = 0; s < 60; s++) {
      const r = tally(t, 200)
      perSecond.push(r.now + r.queued)
      clock.advance(1000)
    }
    // the burst (1,000) lasts 10 s at a net 100/s over, the 500 of backlog 5 s more; then exactly the limit
    expect(perSecond.slice(0, 9).every((n) => n === 200)).toBe(true)
    expect(perSecond.slice(20)).toEqual(Array(40).fill(100))
  })

  it('refills at the limit while idle, up to the burst capacity', () => {
    const clock = new ManualClock()
    const t = new ShapedThrottle(10, clock, { burstSeconds: 2, backlogSeconds: 1 })
    expect(tally(t, 20).now).toBe(20)
    clock.advance(500)
    expect(tally(t, 6)).toMatchObject({ now: 5, queued: 1 })
    clock.advance(3_600_000)
    expect(tally(t, 25)).toMatchObject({ now: 20, queued: 5 })
  })
})

describe('tiers', () => {
  it('scales by units with the documented floors', () => {
    expect(tierLimits({ tier: 'S1', units: 2 }).throttles.connections).toBe(100) // max(100/s, 12/s/unit)
    expect(tierLimits({ tier: 'S1', units: 9 }).throttles.connections).toBe(108)
    expect(tierLimits({ tier: 'S1', units: 10 }).throttles.d2c).toBe(120)
    expect(tierLimits({ tier: 'S2', units: 3 }).throttles.d2c).toBe(360)
    expect(tierLimits({ tier: 'S2', units: 30 }).throttles.twinReads).toBe(300) // max(100/s, 10/s/unit)
    expect(tierLimits({ tier: 'S2', units: 3 }).throttles.twinReads).toBe(100)
    expect(tierLimits({ tier: 'S3', units: 1 }).throttles.d2c).toBe(6000)
    expect(tierLimits({ tier: 'S3', units: 2 }).throttles.registry).toBeCloseTo(5000 / 60 * 2)
    expect(tierLimits({ tier: 'S1', units: 1 }).throttles.methodKB).toBe(160)
    expect(tierLimits({ tier: 'S1', units: 3 }).messagesPerDay).toBe(1_200_000)
    expect(tierLimits({ tier: 'F1', units: 1 })).toMatchObject({ messagesPerDay: 8000, meterChunkBytes: 512, basic: false })
    expect(tierLimits({ tier: 'B2', units: 1 })).toMatchObject({ basic: true, meterChunkBytes: 4096 })
    expect(tierLimits({ tier: 'unlimited', units: 1 }).throttles).toEqual({})
    expect(tierLimits({ tier: 'unlimited', units: 1 }).messagesPerDay).toBeUndefined()
    expect(tierLimits({ tier: 'S1', units: 1, overrides: { d2c: 5 } }).throttles.d2c).toBe(5)
  })

  it('refuses settings Azure does not allow, saying why', () => {
    expect(() => tierLimits({ tier: 'S3', units: 11 })).toThrow(new TierError('S3 has at most 10 units, not 11'))
    expect(() => tierLimits({ tier: 'F1', units: 2 })).toThrow(new TierError('F1 has at most 1 unit, not 2'))
    expect(() => tierLimits({ tier: 'S4' as never, units: 1 })).toThrow(new TierError('tier must be one of unlimited, F1, B1, B2, B3, S1, S2, S3, not S4'))
    expect(() => tierLimits({ tier: 'S1', units: 0 })).toThrow(new TierError('units must be a whole number from 1, not 0'))
    expect(() => tierLimits({ tier: 'S1', units: 1, overrides: { nope: 1 } as never })).toThrow(/there is no throttle nope/)
    expect(() => tierLimits({ tier: 'S1', units: 1, overrides: { d2c: -1 } })).toThrow(new TierError('the limit for d2c must be a positive number per second, not -1'))
  })
})

describe('DailyMeter', () => {
  it('bills ceil(size / 4 KB), at least 1; 0.5 KB on F1', () => {
    const m = new DailyMeter(new ManualClock(), 4096, undefined)
    expect([0, 100, 4096, 4097, 6144, 8192, 8193].map((b) => m.chunks(b))).toEqual([1, 1, 1, 2, 2, 2, 3])
    const free = new DailyMeter(new ManualClock(), 512, 8000)
    expect([511, 512, 513, 4096].map((b) => free.chunks(b))).toEqual([1, 1, 2, 8])
  })

  it('refuses billable operations once the quota is used, until midnight UTC', () => {
    const clock = new ManualClock(Date.UTC(2026, 11, 1, 23, 59, 59))
    const m = new DailyMeter(clock, 4096, 10)
    for (let i = 0; i < 4; i++) expect(m.bill('d2c', 3)).toBe(true) // 12: the operation that crosses is served
    expect(m.bill('d2c', 1)).toBe(false)
    expect(m.bill('twinReads', 1)).toBe(false)
    expect(m.snapshot()).toMatchObject({ day: '2026-12-01', used: 12, quota: 10, operations: { d2c: { messages: 12, operations: 4, refused: 1 }, twinReads: { refused: 1 } } })
    clock.advance(1000)
    expect(m.bill('d2c', 1)).toBe(true)
    expect(m.snapshot()).toMatchObject({ day: '2026-12-02', used: 1, operations: { d2c: { messages: 1, operations: 1, refused: 0 } } })
  })
})

describe('HubThrottles', () => {
  it('a tier change takes effect on the next operation and keeps the counts', async () => {
    const clock = new ManualClock()
    const h = new HubThrottles({ tier: 'unlimited', units: 1 }, { clock, shaping: { burstSeconds: 1, backlogSeconds: 1 }, delay: async () => {} })
    expect(h.has('d2c')).toBe(false)
    h.setTier({ tier: 'S1', units: 1, overrides: { registry: 2 } })
    await h.admitRequest('registry')
    await h.admitRequest('registry')
    await h.admitRequest('registry') // queued
    await h.admitRequest('registry') // queued
    await expect(h.admitRequest('registry')).rejects.toMatchObject({ code: 429002 })
    h.setTier({ tier: 'S3', units: 1 })
    await h.admitRequest('registry')
    expect(h.report()).toMatchObject({ tier: 'S3', throttles: { registry: { perSecond: 5000 / 60, admitted: 3, queued: 2, refused: 1 } } })
  })

  it('bills and refuses with 403002 past the quota', () => {
    const h = new HubThrottles({ tier: 'F1', units: 1 }, { clock: new ManualClock() })
    for (let i = 0; i < 8000; i++) h.bill('d2c', 10)
    expect(() => h.bill('d2c', 10)).toThrow(expect.objectContaining({ code: 403002 }))
  })
})
