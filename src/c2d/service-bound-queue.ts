// The service's service-bound queues, hub-wide and read by the main thread: C2D feedback
// (c2d-messaging.md "Feedback messages") and file-upload notifications (file-upload.md). Shards write
// each feedback record in the same transaction as the completion it reports and then tell this queue
// (OP_FEEDBACK); file notifications are written here (`enqueue`). A receive hands out up to `batch`
// records as one message under a lock token. Complete removes them, abandon makes them receivable
// again; a lock lasts 60 s, a record lives 1 h and is delivered at most 10 times (Azure's defaults,
// configurable for file notifications). A receive counts the delivery, and a complete removes the
// records, before it answers: neither is undone by a crash.
import { randomUUID } from 'node:crypto'
import type { Database, Key, RootDatabase } from 'lmdb'
import { HubError } from '../rest/hub-error.js'
import type { WriteHealth } from '../store/write-health.js'

export const FEEDBACK_BATCH = 64
export const FEEDBACK_LOCK_MS = 60_000
export const FEEDBACK_TTL_MS = 3600_000
export const FEEDBACK_MAX_DELIVERIES = 10

export interface QueueSettings {
  /** records per message: feedback batches them, file notifications go one by one */
  batch: number
  lockMs: number
  ttlMs: number
  maxDeliveries: number
}

/** expired records removed per transaction (by receives and the sweep), so no removal holds the event loop long */
const SWEEP_BATCH = 1000
const SWEEP_MS = 10_000

export const FEEDBACK_SETTINGS: QueueSettings = { batch: FEEDBACK_BATCH, lockMs: FEEDBACK_LOCK_MS, ttlMs: FEEDBACK_TTL_MS, maxDeliveries: FEEDBACK_MAX_DELIVERIES }

export interface FeedbackRecord {
  originalMessageId: string
  enqueuedTimeUtc: string
  statusCode: string
  description: string
  deviceId: string
  deviceGenerationId: string
}

interface Stored<R> { record: R; enqueued: number; deliveries: number }

export interface ServiceBoundMessage<R> {
  lockToken: string
  messageId: string
  enqueuedTimeUtc: string
  deliveryCount: number
  records: R[]
}
export type FeedbackMessage = ServiceBoundMessage<FeedbackRecord>

/** Keys are [enqueued ms, shard, counter]; `id` is their text form for the maps. */
const id = (key: Key) => JSON.stringify(key)

export class ServiceBoundQueue<R extends { deviceId: string }> {
  private readonly items = new Map<string, { key: Key; stored: Stored<R> }>()
  private readonly lockedUntil = new Map<string, number>()
  private readonly locks = new Map<string, { ids: string[]; until: number }>()
  private counter = 0
  private readonly settings: QueueSettings

  private readonly sweeper: NodeJS.Timeout

  constructor(private readonly root: RootDatabase, private readonly db: Database, private readonly health?: WriteHealth, settings: QueueSettings = FEEDBACK_SETTINGS) {
    this.settings = settings
    for (const { key, value } of db.getRange()) this.items.set(id(key), { key, stored: value as Stored<R> })
    // records nobody reads still expire: a service that never connects does not make the queue grow past its TTL
    this.sweeper = setInterval(() => { this.sweep().catch(() => { /* retried on the next sweep */ }) }, SWEEP_MS)
    this.sweeper.unref()
  }

  /** Removes up to SWEEP_BATCH records past their TTL or delivery limit (the oldest first: the map is in key order of arrival). */
  async sweep(now = Date.now()): Promise<void> {
    const gone: string[] = []
    for (const [i, { stored }] of this.items) {
      if (now - stored.enqueued > this.settings.ttlMs || stored.deliveries >= this.settings.maxDeliveries) gone.push(i)
      if (gone.length >= SWEEP_BATCH) break
    }
    await this.remove(gone.filter((i) => (this.lockedUntil.get(i) ?? 0) <= now))
  }

  close(): void {
    clearInterval(this.sweeper)
  }

  get size(): number { return this.items.size }

  /** A record a shard has committed. */
  add(key: Key, stored: Stored<R>): void {
    this.items.set(id(key), { key, stored })
  }

  /**
   * Writes a record of the main thread's (key [enqueued ms, -1, counter]), with `alsoInTransaction`'s
   * writes in the same commit; receivable once committed.
   */
  async enqueue(record: R, now = Date.now(), alsoInTransaction?: () => void): Promise<void> {
    const key: Key = [now, -1, this.counter++]
    const stored: Stored<R> = { record, enqueued: now, deliveries: 0 }
    await this.write(() => this.root.transaction(() => {
      this.db.putSync(key, stored)
      alsoInTransaction?.()
    }))
    this.add(key, stored)
  }

  /** Removes records in one transaction; memory follows only once it committed. */
  private async remove(ids: string[]): Promise<void> {
    if (ids.length === 0) return
    const keys = ids.flatMap((i) => { const it = this.items.get(i); return it ? [it.key] : [] })
    await this.write(() => this.root.transaction(() => { for (const k of keys) this.db.removeSync(k) }))
    for (const i of ids) {
      this.items.delete(i)
      this.lockedUntil.delete(i)
    }
  }

  private async write(op: () => Promise<unknown>): Promise<void> {
    await (this.health ? this.health.run(op) : op())
  }

  /** A deleted device's pending feedback is dropped, as Azure does. */
  dropDevice(deviceId: string): Promise<void> {
    return this.remove([...this.items].filter(([, it]) => it.stored.record.deviceId === deviceId).map(([i]) => i))
  }

  async receive(now = Date.now()): Promise<ServiceBoundMessage<R> | undefined> {
    const { batch, lockMs, ttlMs, maxDeliveries } = this.settings
    const ids: string[] = []
    const gone: string[] = []
    for (const [i, { stored }] of this.items) {
      if (now - stored.enqueued > ttlMs || stored.deliveries >= maxDeliveries) { gone.push(i); continue }
      if ((this.lockedUntil.get(i) ?? 0) > now) continue
      ids.push(i)
      if (ids.length >= batch) break
    }
    // locked before any wait, so a concurrent receive (another link, a REST read) does not pick the same records
    const until = now + lockMs
    for (const i of ids) this.lockedUntil.set(i, until)
    await this.remove(gone.slice(0, SWEEP_BATCH))
    if (ids.length === 0) return undefined
    const counted = ids.map((i) => {
      const it = this.items.get(i)!
      return { key: it.key, stored: { ...it.stored, deliveries: it.stored.deliveries + 1 } }
    })
    try {
      await this.write(() => this.root.transaction(() => { for (const c of counted) this.db.putSync(c.key, c.stored) }))
    } catch (e) {
      for (const i of ids) this.lockedUntil.delete(i)
      throw e
    }
    let deliveryCount = 1
    for (const c of counted) {
      const i = id(c.key)
      if (this.items.has(i)) this.items.set(i, c)
      deliveryCount = Math.max(deliveryCount, c.stored.deliveries)
    }
    const lockToken = randomUUID()
    this.locks.set(lockToken, { ids, until })
    for (const [t, l] of this.locks) if (l.until <= now) this.locks.delete(t)
    return {
      lockToken, messageId: randomUUID(), enqueuedTimeUtc: new Date(counted[0]!.stored.enqueued).toISOString(), deliveryCount,
      records: counted.map((c) => c.stored.record),
    }
  }

  private lock(lockToken: string): string[] {
    const l = this.locks.get(lockToken)
    if (!l || l.until <= Date.now()) throw new HubError(412002, `the lock ${lockToken} is unknown or has expired`)
    this.locks.delete(lockToken)
    return l.ids
  }

  /** Resolves once the records are removed for good; if that fails they are offered again when their lock runs out. */
  async complete(lockToken: string): Promise<void> {
    const ids = this.lock(lockToken)
    await this.remove(ids.filter((i) => this.items.has(i)))
  }

  abandon(lockToken: string): void {
    for (const i of this.lock(lockToken)) this.lockedUntil.delete(i)
  }
}

export type FeedbackQueue = ServiceBoundQueue<FeedbackRecord>
