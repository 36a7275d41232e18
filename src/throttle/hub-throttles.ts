// The hub's throttles and daily meter under its current tier, changeable at run time (the next
// operation sees the new limits). REST routes wait out a queued admission or answer 429002; the
// device edge asks for D2C and connection admissions on its own thread, with no cross-thread step.
import { HubError } from '../rest/hub-error.js'
import { systemClock, type Clock } from './clock.js'
import { DailyMeter, type MeteredOperation } from './daily-meter.js'
import { FaultInjector } from './faults.js'
import { AZURE_SHAPING, ShapedThrottle, type Admission, type ShapingOptions } from './shaped-throttle.js'
import { THROTTLES, tierLimits, type ThrottleName, type TierLimits, type TierSetting } from './tiers.js'

const NOW: Admission = { kind: 'now' }

export interface HubThrottlesOptions {
  clock?: Clock
  shaping?: ShapingOptions
  /** how a queued request waits (tests pass one that does not) */
  delay?: (ms: number) => Promise<void>
}

export class HubThrottles {
  private limitsNow: TierLimits
  private throttles = new Map<ThrottleName, ShapedThrottle>()
  readonly meter: DailyMeter
  /** faults injected for integration tests (throttle, server busy, dropped connections, delayed acks) */
  readonly faults: FaultInjector
  private readonly clock: Clock
  private readonly shaping: ShapingOptions
  private readonly delay: (ms: number) => Promise<void>
  private readonly testDelay: ((ms: number) => Promise<void>) | undefined
  /** counts kept across tier changes */
  private readonly totals = new Map<ThrottleName, { admitted: number; queued: number; refused: number }>()

  constructor(setting: TierSetting, o: HubThrottlesOptions = {}) {
    this.clock = o.clock ?? systemClock
    this.shaping = o.shaping ?? AZURE_SHAPING
    this.delay = o.delay ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)))
    this.testDelay = o.delay
    this.limitsNow = tierLimits(setting)
    this.meter = new DailyMeter(this.clock, this.limitsNow.meterChunkBytes, this.limitsNow.messagesPerDay)
    this.faults = new FaultInjector(this.clock)
    this.build()
  }

  get limits(): TierLimits { return this.limitsNow }

  /** told of every tier change (I/O threads learn whether the main thread must admit their traffic) */
  onTierChange: () => void = () => {}

  /** A new tier, units or overrides; throws TierError when the setting is not one Azure allows. */
  setTier(setting: TierSetting): TierLimits {
    const limits = tierLimits(setting)
    this.fold()
    this.limitsNow = limits
    this.meter.chunkBytes = limits.meterChunkBytes
    this.meter.messagesPerDay = limits.messagesPerDay
    this.build()
    this.onTierChange()
    return limits
  }

  /** Whether the throttle applies at all (unlimited tiers skip the check on the hot path). */
  has(name: ThrottleName): boolean { return this.throttles.has(name) }

  admit(name: ThrottleName, cost = 1): Admission {
    const t = this.throttles.get(name)
    return t ? t.admit(cost) : NOW
  }

  /** For a REST operation: resolves once admitted (perhaps after queueing), or throws 429002. */
  async admitRequest(name: ThrottleName, cost = 1): Promise<void> {
    const a = this.admit(name, cost)
    if (a.kind === 'now') return
    if (a.kind === 'refused') throw new HubError(429002, `the ${name} throttle's backlog is full: more than ${this.limitsNow.throttles[name]}/s on tier ${this.limitsNow.tier}; retry later`)
    await this.delay(a.waitMs)
  }

  /** How a queued REST request waits: the tests' delay if they gave one, else `real` (a bounded timer). */
  wait(ms: number, real: () => Promise<void>): Promise<void> {
    return this.testDelay ? this.testDelay(ms) : real()
  }

  /** Bills a metered operation of `bytes`; throws 403002 once the day's quota is used up. */
  bill(op: MeteredOperation, bytes: number, chunks = this.meter.chunks(bytes)): void {
    if (!this.meter.bill(op, chunks)) throw new HubError(403002, `the daily message quota of ${this.limitsNow.messagesPerDay} is used up; it resets at midnight UTC`)
  }

  /** Today's counters, the tier, and each throttle's counts. */
  report(): Record<string, unknown> {
    this.fold()
    const throttles: Record<string, unknown> = {}
    for (const name of THROTTLES) {
      const limit = this.limitsNow.throttles[name]
      const t = this.totals.get(name) ?? { admitted: 0, queued: 0, refused: 0 }
      throttles[name] = { perSecond: limit ?? null, ...t }
    }
    return { tier: this.limitsNow.tier, units: this.limitsNow.units, basic: this.limitsNow.basic, quota: this.meter.snapshot(), throttles }
  }

  /** Moves the live throttles' counts into the totals (before they are replaced or read). */
  private fold(): void {
    for (const [name, t] of this.throttles) {
      const sum = this.totals.get(name) ?? { admitted: 0, queued: 0, refused: 0 }
      sum.admitted += t.admitted
      sum.queued += t.queued
      sum.refused += t.refused
      t.admitted = t.queued = t.refused = 0
      this.totals.set(name, sum)
    }
  }

  private build(): void {
    this.throttles = new Map()
    for (const [name, perSecond] of Object.entries(this.limitsNow.throttles) as [ThrottleName, number][]) {
      this.throttles.set(name, new ShapedThrottle(perSecond, this.clock, this.shaping))
    }
  }
}
