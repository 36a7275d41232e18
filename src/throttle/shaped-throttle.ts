// One of Azure IoT Hub's operation throttles with its traffic shaping: a burst above the limit is
// served at once for a while (a token bucket holding `burstSeconds` of the limit), then requests
// queue and drain at the limit (their wait grows), then a bounded backlog (`backlogSeconds` of the
// limit) overflows into 429002. The backlog is a debt, not a list: a request admitted while tokens
// are owed waits until its share is repaid, so nothing is held per request and the check is a few
// arithmetic operations.
import type { Clock } from './clock.js'

export type Admission =
  | { kind: 'now' }
  /** served after `waitMs`, in the order admitted */
  | { kind: 'queued'; waitMs: number }
  /** the backlog is full: 429002 ThrottleBacklogLimitExceeded */
  | { kind: 'refused' }

export interface ShapingOptions {
  /** how many seconds of the limit a burst may use before requests queue (Azure: "a minute or two") */
  burstSeconds: number
  /** how many seconds of the limit may wait in the backlog before requests are refused */
  backlogSeconds: number
}

export const AZURE_SHAPING: ShapingOptions = { burstSeconds: 60, backlogSeconds: 10 }

export class ShapedThrottle {
  private tokens: number
  private last: number
  private readonly capacity: number
  private readonly floor: number
  /** counts since start, for the metering endpoint and /metrics */
  admitted = 0
  queued = 0
  refused = 0

  constructor(readonly perSecond: number, private readonly clock: Clock, shaping: ShapingOptions = AZURE_SHAPING) {
    if (!(perSecond > 0)) throw new Error(`a throttle needs a positive limit, not ${perSecond}`)
    this.capacity = perSecond * shaping.burstSeconds
    this.floor = -perSecond * shaping.backlogSeconds
    this.tokens = this.capacity
    this.last = clock.now()
  }

  /** Admits an operation costing `cost` units of the limit (1 for most; 4 KB chunks for methods). */
  admit(cost = 1): Admission {
    const now = this.clock.now()
    if (now > this.last) {
      this.tokens = Math.min(this.capacity, this.tokens + ((now - this.last) * this.perSecond) / 1000)
      this.last = now
    }
    const after = this.tokens - cost
    if (after >= 0) {
      this.tokens = after
      this.admitted++
      return { kind: 'now' }
    }
    if (after < this.floor) {
      this.refused++
      return { kind: 'refused' }
    }
    this.tokens = after
    this.queued++
    return { kind: 'queued', waitMs: Math.ceil((-after * 1000) / this.perSecond) }
  }
}
