// The daily message quota as Azure meters it: each billable operation counts ceil(size / chunk)
// messages (at least 1; 4 KB chunks, 0.5 KB on F1), the day ends at UTC midnight, and past the quota
// billable operations are refused (403002 IotHubQuotaExceeded). Counters per operation class feed
// the metering endpoint and /metrics.
import type { Clock } from './clock.js'

export const METERED = ['d2c', 'c2d', 'methods', 'twinReads', 'twinUpdates', 'queries', 'fileUploads', 'jobDeviceOps'] as const
export type MeteredOperation = (typeof METERED)[number]

export interface MeterCounters {
  /** billed messages (chunks) */
  messages: number
  /** operations */
  operations: number
  /** refused because the quota was used up */
  refused: number
}

const DAY_MS = 86_400_000

export class DailyMeter {
  private day: number
  private used = 0
  private counters = freshCounters()

  constructor(private readonly clock: Clock, public chunkBytes: number, public messagesPerDay: number | undefined) {
    this.day = Math.floor(clock.now() / DAY_MS)
  }

  /** Billed messages for an operation of `bytes` payload bytes. */
  chunks(bytes: number): number {
    return bytes <= this.chunkBytes ? 1 : Math.ceil(bytes / this.chunkBytes)
  }

  /**
   * Bills an operation of `chunks` messages; false (and counted as refused) when the day's quota is
   * already used up. An operation that crosses the quota is still served: Azure refuses the next.
   */
  bill(op: MeteredOperation, chunks: number): boolean {
    this.rollOver()
    const c = this.counters[op]
    if (this.messagesPerDay !== undefined && this.used >= this.messagesPerDay) {
      c.refused++
      return false
    }
    this.used += chunks
    c.messages += chunks
    c.operations++
    return true
  }

  /** Operations another thread served and metered (I/O threads on a tier with no quota): counted as they are. */
  record(op: MeteredOperation, chunks: number, operations: number): void {
    this.rollOver()
    const c = this.counters[op]
    this.used += chunks
    c.messages += chunks
    c.operations += operations
  }

  /** Whether billable operations are refused right now. */
  get exhausted(): boolean {
    this.rollOver()
    return this.messagesPerDay !== undefined && this.used >= this.messagesPerDay
  }

  snapshot(): { day: string; used: number; quota: number | null; chunkBytes: number; operations: Record<MeteredOperation, MeterCounters> } {
    this.rollOver()
    return {
      day: new Date(this.day * DAY_MS).toISOString().slice(0, 10), used: this.used, quota: this.messagesPerDay ?? null,
      chunkBytes: this.chunkBytes, operations: structuredClone(this.counters),
    }
  }

  private rollOver(): void {
    const day = Math.floor(this.clock.now() / DAY_MS)
    if (day === this.day) return
    this.day = day
    this.used = 0
    this.counters = freshCounters()
  }
}

function freshCounters(): Record<MeteredOperation, MeterCounters> {
  return Object.fromEntries(METERED.map((op) => [op, { messages: 0, operations: 0, refused: 0 }])) as Record<MeteredOperation, MeterCounters>
}
