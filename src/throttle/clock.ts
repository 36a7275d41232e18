// Time as the throttles and the daily quota see it: the wall clock in the hub, a clock the test moves.
export interface Clock {
  /** milliseconds since the epoch */
  now(): number
}

export const systemClock: Clock = { now: () => Date.now() }

/** A clock that stands still until told to move (tests). */
export class ManualClock implements Clock {
  constructor(private ms = Date.UTC(2026, 11, 1, 12)) {}
  now(): number { return this.ms }
  advance(ms: number): void { this.ms += ms }
  set(ms: number): void { this.ms = ms }
}
