// Cloud-to-device queues of the devices a shard owns (c2d-messaging.md). Records live in LMDB
// (`c2d`, key [deviceId, sequenceNumber]); memory holds each queue's order, expiry, delivery count
// and lock. A message is Enqueued, then Invisible while a PUBLISH awaits its PUBACK (the lock), then
// Completed by the PUBACK, or dead-lettered when it expires or is delivered more than
// maxDeliveryCount times. Locks end when the connection closes or after the lock timeout.
import type { Database } from 'lmdb'
import { formatPropertyBag } from '../src/mqtt/property-bag.js'
import { c2dTopic } from '../src/mqtt/iothub-topics.js'
import { HubError } from '../src/rest/hub-error.js'

export const MAX_QUEUE_DEPTH = 50
export const MAX_C2D_BYTES = 64 * 1024
export const DEFAULT_TTL_MS = 3600_000
export const MAX_TTL_MS = 48 * 3600_000
export const MAX_DELIVERY_COUNT = 10
export const LOCK_TIMEOUT_MS = 60_000
/** PUBLISHes awaiting PUBACK per connection; the next wait in order. */
const WINDOW = 16

export type Ack = 'none' | 'positive' | 'negative' | 'full'

/** What the service sends (validated on the edge, sized here). */
export interface C2dSend {
  messageId?: string
  correlationId?: string
  userId?: string
  contentType?: string
  contentEncoding?: string
  ack: Ack
  /** absolute expiry, ms since the epoch; the default TTL when absent */
  expiry?: number
  properties: Record<string, string>
  body: Uint8Array
}

interface Stored extends C2dSend {
  deviceId: string
  generationId: string
  sequenceNumber: number
  enqueuedTime: number
  expiry: number
  /** the sender set the expiry (only then does the device see `$.exp`) */
  explicitExpiry: boolean
  deliveryCount: number
}

interface Entry {
  seq: number
  expiry: number
  deliveryCount: number
  ack: Ack
  messageId: string
  generationId: string
  /** false until its LMDB write committed: not delivered before (and nothing after it, to keep order) */
  durable: boolean
  lock?: { connId: number; packetId: number; until: number }
}

interface Queue { entries: Entry[]; nextSeq: number }

export interface C2dHooks {
  publish(connId: number, topic: string, payload: Uint8Array, qos: number, packetId: number, dup: boolean): void
  feedback(record: Record<string, string>): void
  count(deviceId: string, count: number): void
}

type Outcome = 'Success' | 'Expired' | 'DeliveryCountExceeded' | 'Rejected' | 'Purged'
const DESCRIPTION: Record<Outcome, string> = {
  Success: 'Success', Expired: 'Message Expired', DeliveryCountExceeded: 'Message delivery count exceeded',
  Rejected: 'Message rejected', Purged: 'Message purged',
}

export class C2dQueues {
  private readonly queues = new Map<string, Queue>()
  /** device → the connection messages go to (connected and subscribed) */
  private readonly targets = new Map<string, number>()
  private readonly conns = new Map<number, { deviceId: string; nextPacketId: number; inflight: Map<number, Entry> }>()

  constructor(private readonly db: Database, private readonly hooks: C2dHooks) {}

  /** Loads the queues of this shard's devices; every lock from before a restart is gone. */
  load(isMine: (deviceId: string) => boolean): void {
    for (const { key, value } of this.db.getRange()) {
      const [deviceId, seq] = key as [string, number]
      if (!isMine(deviceId)) continue
      const r = value as Stored
      const q = this.queue(deviceId)
      q.entries.push({ seq, expiry: r.expiry, deliveryCount: r.deliveryCount, ack: r.ack, messageId: r.messageId ?? '', generationId: r.generationId, durable: true })
      q.nextSeq = Math.max(q.nextSeq, seq + 1)
    }
    for (const [deviceId, q] of this.queues) this.hooks.count(deviceId, q.entries.length)
  }

  private queue(deviceId: string): Queue {
    let q = this.queues.get(deviceId)
    if (!q) this.queues.set(deviceId, (q = { entries: [], nextSeq: 1 }))
    return q
  }

  /** Enqueues; resolves after the commit. */
  async send(deviceId: string, generationId: string, msg: C2dSend): Promise<{ sequenceNumber: number; expiryTimeUtc: string; queueDepth: number }> {
    const bag = this.bag(deviceId, msg)
    const size = msg.body.length + Buffer.byteLength(bag)
    if (size > MAX_C2D_BYTES) throw new HubError(413001, `message of ${size} bytes exceeds ${MAX_C2D_BYTES}`)
    const q = this.queue(deviceId)
    if (q.entries.length >= MAX_QUEUE_DEPTH) throw new HubError(403004, `the queue of device ${deviceId} already holds ${MAX_QUEUE_DEPTH} messages`)
    const now = Date.now()
    const expiry = Math.min(msg.expiry ?? now + DEFAULT_TTL_MS, now + MAX_TTL_MS)
    const seq = q.nextSeq++
    const record: Stored = { ...msg, deviceId, generationId, sequenceNumber: seq, enqueuedTime: now, expiry, explicitExpiry: msg.expiry !== undefined, deliveryCount: 0 }
    const entry: Entry = { seq, expiry, deliveryCount: 0, ack: msg.ack, messageId: msg.messageId ?? '', generationId, durable: false }
    q.entries.push(entry)
    this.hooks.count(deviceId, q.entries.length)
    try {
      await this.db.put([deviceId, seq], record)
    } catch (e) {
      this.drop(deviceId, entry)
      throw e
    }
    // delivered only once it is durable, so a device never sees a message the hub could lose
    entry.durable = true
    if (q.entries.includes(entry)) this.pump(deviceId)
    return { sequenceNumber: seq, expiryTimeUtc: new Date(expiry).toISOString(), queueDepth: q.entries.length }
  }

  /** DELETE /devices/{id}/commands: every pending message goes, with Purged feedback where asked. */
  /** Resolves once every queue change made so far is committed. */
  committed(): Promise<unknown> {
    return this.db.committed
  }

  purge(deviceId: string, withFeedback = true): number {
    const q = this.queues.get(deviceId)
    if (!q) return 0
    const entries = [...q.entries]
    for (const e of entries) this.finish(deviceId, e, withFeedback ? 'Purged' : undefined)
    if (!withFeedback) this.queues.delete(deviceId)
    return entries.length
  }

  /** The device is connected and subscribed on this connection: deliver. */
  attach(deviceId: string, connId: number): void {
    this.targets.set(deviceId, connId)
    if (!this.conns.has(connId)) this.conns.set(connId, { deviceId, nextPacketId: 1, inflight: new Map() })
    this.pump(deviceId)
  }

  /** The connection closed (or unsubscribed): its locks end, the messages are Enqueued again. */
  detach(connId: number): void {
    const c = this.conns.get(connId)
    if (!c) return
    this.conns.delete(connId)
    for (const e of c.inflight.values()) if (e.lock?.connId === connId) e.lock = undefined
    if (this.targets.get(c.deviceId) === connId) this.targets.delete(c.deviceId)
  }

  /** PUBACK completes the message. */
  puback(connId: number, packetId: number): void {
    const c = this.conns.get(connId)
    const e = c?.inflight.get(packetId)
    if (!c || !e) return
    c.inflight.delete(packetId)
    if (e.lock?.connId === connId && e.lock.packetId === packetId) this.finish(c.deviceId, e, 'Success')
    this.pump(c.deviceId)
  }

  /** Expiry and lock timeouts; called about once a second. */
  sweep(now = Date.now()): void {
    for (const [deviceId, q] of this.queues) {
      let changed = false
      for (const e of [...q.entries]) {
        if (e.expiry <= now) {
          this.finish(deviceId, e, 'Expired')
          changed = true
        } else if (e.lock && e.lock.until <= now) {
          this.conns.get(e.lock.connId)?.inflight.delete(e.lock.packetId)
          e.lock = undefined
          changed = true
        }
      }
      if (changed) this.pump(deviceId)
    }
  }

  private pump(deviceId: string): void {
    const connId = this.targets.get(deviceId)
    const q = this.queues.get(deviceId)
    if (connId === undefined || !q) return
    const c = this.conns.get(connId)!
    const now = Date.now()
    for (const e of [...q.entries]) {
      if (c.inflight.size >= WINDOW) return
      if (e.lock) continue
      if (!e.durable) return
      if (e.expiry <= now) { this.finish(deviceId, e, 'Expired'); continue }
      if (e.deliveryCount >= MAX_DELIVERY_COUNT) { this.finish(deviceId, e, 'DeliveryCountExceeded'); continue }
      const record = this.db.get([deviceId, e.seq]) as Stored | undefined
      if (!record) { this.drop(deviceId, e); continue }
      e.deliveryCount++
      record.deliveryCount = e.deliveryCount
      void this.db.put([deviceId, e.seq], record)
      let packetId = c.nextPacketId
      while (c.inflight.has(packetId)) packetId = packetId === 65535 ? 1 : packetId + 1
      c.nextPacketId = packetId === 65535 ? 1 : packetId + 1
      e.lock = { connId, packetId, until: now + LOCK_TIMEOUT_MS }
      c.inflight.set(packetId, e)
      this.hooks.publish(connId, c2dTopic(deviceId, this.bag(deviceId, record)), record.body, 1, packetId, e.deliveryCount > 1)
    }
  }

  /** The property bag as the device SDK parses it: `$.` system keys, then application properties. */
  private bag(deviceId: string, m: C2dSend & { explicitExpiry?: boolean }): string {
    const props: Record<string, string> = {}
    if (m.messageId) props['$.mid'] = m.messageId
    if (m.correlationId) props['$.cid'] = m.correlationId
    if (m.userId) props['$.uid'] = m.userId
    props['$.to'] = `/devices/${deviceId}/messages/devicebound`
    if (m.expiry !== undefined && m.explicitExpiry !== false) props['$.exp'] = new Date(m.expiry).toISOString()
    if (m.contentType) props['$.ct'] = m.contentType
    if (m.contentEncoding) props['$.ce'] = m.contentEncoding
    if (m.ack !== 'none') props['iothub-ack'] = m.ack
    return formatPropertyBag({ ...props, ...m.properties })
  }

  /** Completed or dead-lettered: gone from the queue, with feedback when the sender asked for it. */
  private finish(deviceId: string, e: Entry, outcome: Outcome | undefined): void {
    this.drop(deviceId, e)
    if (e.lock) this.conns.get(e.lock.connId)?.inflight.delete(e.lock.packetId)
    void this.db.remove([deviceId, e.seq])
    if (!outcome) return
    const wanted = outcome === 'Success' ? e.ack === 'positive' || e.ack === 'full' : e.ack !== 'none' && e.ack !== 'positive'
    if (wanted || (outcome === 'Purged' && e.ack !== 'none')) {
      this.hooks.feedback({
        originalMessageId: e.messageId, enqueuedTimeUtc: new Date().toISOString(), statusCode: outcome,
        description: DESCRIPTION[outcome], deviceId, deviceGenerationId: e.generationId,
      })
    }
  }

  private drop(deviceId: string, e: Entry): void {
    const q = this.queues.get(deviceId)
    if (!q) return
    const i = q.entries.indexOf(e)
    if (i < 0) return
    q.entries.splice(i, 1)
    this.hooks.count(deviceId, q.entries.length)
  }
}
