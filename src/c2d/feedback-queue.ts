// The service's C2D feedback queue (c2d-messaging.md "Feedback messages"), hub-wide and owned by
// the main thread: shards report outcomes (OP_FEEDBACK), records are stored in LMDB (`feedback`),
// and a receive hands out up to 64 records as one message under a lock token. Complete removes them,
// abandon makes them receivable again; a lock lasts 60 s, a record lives 1 h and is delivered at
// most 10 times (Azure's feedback defaults).
import { randomUUID } from 'node:crypto'
import type { Database } from 'lmdb'
import { HubError } from '../rest/hub-error.js'

export const FEEDBACK_BATCH = 64
export const FEEDBACK_LOCK_MS = 60_000
export const FEEDBACK_TTL_MS = 3600_000
export const FEEDBACK_MAX_DELIVERIES = 10

export interface FeedbackRecord {
  originalMessageId: string
  enqueuedTimeUtc: string
  statusCode: string
  description: string
  deviceId: string
  deviceGenerationId: string
}

interface Stored { record: FeedbackRecord; enqueued: number; deliveries: number }

export interface FeedbackMessage {
  lockToken: string
  messageId: string
  enqueuedTimeUtc: string
  deliveryCount: number
  records: FeedbackRecord[]
}

export class FeedbackQueue {
  private readonly items = new Map<number, Stored>()
  private readonly lockedUntil = new Map<number, number>()
  private readonly locks = new Map<string, { keys: number[]; until: number }>()
  private nextKey: number

  constructor(private readonly db: Database) {
    let last = 0
    for (const { key, value } of db.getRange()) {
      this.items.set(key as number, value as Stored)
      last = key as number
    }
    this.nextKey = Math.max(last + 1, Date.now() * 1000)
  }

  get size(): number { return this.items.size }

  add(record: FeedbackRecord): void {
    const key = this.nextKey++
    const stored: Stored = { record, enqueued: Date.now(), deliveries: 0 }
    this.items.set(key, stored)
    void this.db.put(key, stored)
  }

  /** A deleted device's pending feedback is dropped, as Azure does. */
  dropDevice(deviceId: string): void {
    for (const [key, s] of this.items) if (s.record.deviceId === deviceId) this.remove(key)
  }

  private remove(key: number): void {
    this.items.delete(key)
    this.lockedUntil.delete(key)
    void this.db.remove(key)
  }

  receive(now = Date.now()): FeedbackMessage | undefined {
    const keys: number[] = []
    let deliveryCount = 1
    for (const [key, s] of this.items) {
      if (now - s.enqueued > FEEDBACK_TTL_MS) { this.remove(key); continue }
      if ((this.lockedUntil.get(key) ?? 0) > now) continue
      if (s.deliveries >= FEEDBACK_MAX_DELIVERIES) { this.remove(key); continue }
      keys.push(key)
      if (keys.length >= FEEDBACK_BATCH) break
    }
    if (keys.length === 0) return undefined
    const lockToken = randomUUID()
    const until = now + FEEDBACK_LOCK_MS
    for (const key of keys) {
      const s = this.items.get(key)!
      s.deliveries++
      deliveryCount = Math.max(deliveryCount, s.deliveries)
      this.lockedUntil.set(key, until)
      void this.db.put(key, s)
    }
    this.locks.set(lockToken, { keys, until })
    for (const [t, l] of this.locks) if (l.until <= now) this.locks.delete(t)
    return {
      lockToken, messageId: randomUUID(), enqueuedTimeUtc: new Date(this.items.get(keys[0]!)!.enqueued).toISOString(), deliveryCount,
      records: keys.map((k) => this.items.get(k)!.record),
    }
  }

  private lock(lockToken: string): number[] {
    const l = this.locks.get(lockToken)
    if (!l || l.until <= Date.now()) throw new HubError(412002, `the lock ${lockToken} is unknown or has expired`)
    this.locks.delete(lockToken)
    return l.keys
  }

  complete(lockToken: string): void {
    for (const key of this.lock(lockToken)) if (this.items.has(key)) this.remove(key)
  }

  abandon(lockToken: string): void {
    for (const key of this.lock(lockToken)) this.lockedUntil.delete(key)
  }
}
