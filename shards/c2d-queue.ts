// Cloud-to-device queues of the devices a shard owns (c2d-messaging.md). Records live in LMDB
// (`c2d`, key [deviceId, sequenceNumber]); memory holds each queue's order, expiry, delivery count
// and lock. A message is Enqueued, then Invisible while a delivery awaits its settlement (the lock),
// then Completed (MQTT PUBACK, AMQP accept), Rejected (AMQP reject: dead-lettered) or Abandoned (AMQP
// release or modify: Enqueued again), or dead-lettered when it expires or is delivered more than
// maxDeliveryCount times. Locks end when the connection closes or after the lock timeout.
//
// What a crash must not undo is written first: a delivery's count is committed before its PUBLISH
// leaves (so a message cannot exceed maxDeliveryCount across restarts), and a message's removal
// commits in one transaction with its feedback record (so feedback is neither lost nor doubled).
import { randomUUID } from 'node:crypto'
import type { Database, RootDatabase } from 'lmdb'
import { formatPropertyBag } from '../src/mqtt/property-bag.js'
import { c2dTopic } from '../src/mqtt/iothub-topics.js'
import { MAX_TOPIC_BYTES } from '../src/mqtt/packets.js'
import { HubError } from '../src/rest/hub-error.js'
import type { C2dOutcome } from '../src/edge/edge-connection.js'

export const MAX_QUEUE_DEPTH = 50
export const MAX_C2D_BYTES = 64 * 1024
export const DEFAULT_TTL_MS = 3600_000
export const MAX_TTL_MS = 48 * 3600_000
export const MAX_DELIVERY_COUNT = 10
export const LOCK_TIMEOUT_MS = 60_000
/** the connId of locks taken over HTTPS: no connection holds them, their lock token does */
const HTTP_LOCK = -1
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
  /** held by a connection's delivery (connId, packetId) or by a device's HTTPS receive (`token`, connId HTTP_LOCK) */
  lock?: { connId: number; packetId: number; until: number; token?: string }
  /** where it was last sent: a redelivery on the same connection keeps the packet id (MQTT's rule for DUP) */
  lastSent?: { connId: number; packetId: number }
}

interface Queue { entries: Entry[]; nextSeq: number }

/** A feedback record as stored in LMDB `feedback` (key [enqueued ms, shard, counter]), read by the service's feedback queue. */
export interface StoredFeedback { record: Record<string, string>; enqueued: number; deliveries: number }
export type FeedbackKey = [number, number, number]

export interface C2dStores {
  root: RootDatabase
  c2d: Database
  /** each device's next sequence number, written with each message */
  c2dSequences: Database
  feedback: Database
  /** tells feedback keys of this shard from other shards' */
  shardIndex: number
}

export interface C2dHooks {
  publish(connId: number, topic: string, payload: Uint8Array, qos: number, packetId: number, dup: boolean): void
  /** a feedback record committed with its message's completion */
  feedback(key: FeedbackKey, stored: StoredFeedback): void
  count(deviceId: string, count: number): void
  /** whether writes are being accepted (delivery needs one: the delivery count) */
  writable(): boolean
  writeFailed(e: unknown): void
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
  private readonly db: Database
  private feedbackCounter = 0
  /** next sequence numbers stored for devices whose queue is not in memory */
  private readonly sequences = new Map<string, number>()
  private readonly pendingWrites = new Set<Promise<unknown>>()

  constructor(private readonly stores: C2dStores, private readonly hooks: C2dHooks) {
    this.db = stores.c2d
  }

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
    // an empty queue starts where the device's numbers left off, not at 1 again
    for (const { key, value } of this.stores.c2dSequences.getRange()) {
      if (isMine(key as string)) this.sequences.set(key as string, value as number)
    }
    for (const [deviceId, q] of this.queues) this.hooks.count(deviceId, q.entries.length)
  }

  private queue(deviceId: string): Queue {
    let q = this.queues.get(deviceId)
    if (!q) this.queues.set(deviceId, (q = { entries: [], nextSeq: this.sequences.get(deviceId) ?? 1 }))
    return q
  }

  /** Enqueues; resolves after the commit. */
  async send(deviceId: string, generationId: string, msg: C2dSend): Promise<{ sequenceNumber: number; expiryTimeUtc: string; queueDepth: number }> {
    const bag = this.bag(deviceId, msg)
    const size = msg.body.length + Buffer.byteLength(bag)
    if (size > MAX_C2D_BYTES) throw new HubError(413001, `message of ${size} bytes exceeds ${MAX_C2D_BYTES}`)
    // the properties travel in the MQTT topic, whose length has 16 bits
    const topicBytes = Buffer.byteLength(c2dTopic(deviceId, bag))
    if (topicBytes > MAX_TOPIC_BYTES) throw new HubError(400004, `the message's properties take ${topicBytes} bytes in the MQTT topic; at most ${MAX_TOPIC_BYTES} fit`)
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
      // one transaction: the message and the device's next number
      await Promise.all([this.db.put([deviceId, seq], record), this.stores.c2dSequences.put(deviceId, seq + 1)])
    } catch (e) {
      this.drop(deviceId, entry)
      throw e
    }
    // delivered only once it is durable, so a device never sees a message the hub could lose
    entry.durable = true
    if (q.entries.includes(entry)) this.pump(deviceId)
    return { sequenceNumber: seq, expiryTimeUtc: new Date(expiry).toISOString(), queueDepth: q.entries.length }
  }

  /** Resolves once every queue change made so far is committed (or failed). */
  async committed(): Promise<void> {
    while (this.pendingWrites.size > 0) await Promise.all(this.pendingWrites)
  }

  /** `p` handles its own failure; this only waits for it. */
  private track(p: Promise<unknown>): void {
    const t = p.catch(() => {}).finally(() => this.pendingWrites.delete(t))
    this.pendingWrites.add(t)
  }

  /** DELETE /devices/{id}/commands: every pending message goes, with Purged feedback where asked. */
  /** Resolves with the count once every removal is committed; rejects if one failed. */
  async purge(deviceId: string, withFeedback = true): Promise<number> {
    const q = this.queues.get(deviceId)
    if (!q) return 0
    const entries = [...q.entries]
    const removals = entries.map((e) => this.finish(deviceId, e, withFeedback ? 'Purged' : undefined))
    if (!withFeedback) {
      this.sequences.set(deviceId, q.nextSeq) // numbers go on, even for a device created again under this id
      this.queues.delete(deviceId)
    }
    await Promise.all(removals)
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
    // a newer connection that opened before this one closed found these messages locked: offer them now
    else if (this.targets.has(c.deviceId)) this.pump(c.deviceId)
  }

  /** PUBACK completes the message. */
  puback(connId: number, packetId: number): void {
    this.settle(connId, packetId, 'complete')
  }

  /**
   * The device settled a message it holds the lock of: complete removes it (feedback Success),
   * reject dead-letters it (feedback Rejected), abandon puts it back, Enqueued, its delivery count kept.
   */
  settle(connId: number, packetId: number, outcome: C2dOutcome): void {
    const c = this.conns.get(connId)
    const e = c?.inflight.get(packetId)
    if (!c || !e) return
    c.inflight.delete(packetId)
    if (e.lock?.connId === connId && e.lock.packetId === packetId) {
      if (outcome === 'abandon') e.lock = undefined
      else this.finish(c.deviceId, e, outcome === 'complete' ? 'Success' : 'Rejected')
    }
    this.pump(c.deviceId)
  }

  /**
   * HTTPS receive: the first message no one holds, locked for LOCK_TIMEOUT_MS under a new lock token
   * (a GUID, as Azure's). Its delivery count is committed before it is returned; null when none waits.
   */
  async receive(deviceId: string): Promise<(Stored & { lockToken: string }) | null> {
    const q = this.queues.get(deviceId)
    if (!q) return null
    if (!this.hooks.writable()) throw new HubError(503001, 'the hub is not accepting writes; retry later')
    const now = Date.now()
    for (const e of [...q.entries]) {
      const record = this.deliverable(deviceId, e, now)
      if (record === 'skip') continue
      if (record === 'stop') return null
      const lock = (e.lock = { connId: HTTP_LOCK, packetId: 0, until: now + LOCK_TIMEOUT_MS, token: randomUUID() })
      e.lastSent = undefined
      const written = this.db.put([deviceId, e.seq], record)
      this.track(written)
      try {
        await written
      } catch (err) {
        if (e.lock === lock) e.lock = undefined
        this.hooks.writeFailed(err)
        throw err
      }
      return { ...record, lockToken: lock.token }
    }
    return null
  }

  /**
   * HTTPS complete, reject or abandon of the message locked under `lockToken`; resolves once the
   * outcome is committed. A token no lock holds (never issued, settled, or timed out) is 412002.
   */
  async settleLocked(deviceId: string, lockToken: string, outcome: C2dOutcome): Promise<void> {
    const e = this.queues.get(deviceId)?.entries.find((x) => x.lock?.token !== undefined && x.lock.token === lockToken)
    if (!e) throw new HubError(412002, `no message of device ${deviceId} is locked under ${lockToken}: it was settled, or its lock expired`)
    if (outcome === 'abandon') {
      e.lock = undefined
      this.pump(deviceId)
      return
    }
    await this.finish(deviceId, e, outcome === 'complete' ? 'Success' : 'Rejected')
  }

  /** Expiry and lock timeouts; called about once a second. */
  sweep(now = Date.now()): void {
    for (const [deviceId, q] of this.queues) {
      let changed = false
      for (const e of [...q.entries]) {
        if (e.expiry <= now) {
          if (!this.hooks.writable()) continue // dead-lettered once writes work again
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
    if (connId === undefined || !q || !this.hooks.writable()) return
    const c = this.conns.get(connId)!
    const now = Date.now()
    for (const e of [...q.entries]) {
      if (c.inflight.size >= WINDOW) return
      const record = this.deliverable(deviceId, e, now)
      if (record === 'skip') continue
      if (record === 'stop') return
      let packetId: number
      if (e.lastSent?.connId === connId && !c.inflight.has(e.lastSent.packetId)) {
        packetId = e.lastSent.packetId
      } else {
        packetId = c.nextPacketId
        while (c.inflight.has(packetId)) packetId = packetId === 65535 ? 1 : packetId + 1
        c.nextPacketId = packetId === 65535 ? 1 : packetId + 1
      }
      e.lastSent = { connId, packetId }
      const lock = (e.lock = { connId, packetId, until: now + LOCK_TIMEOUT_MS })
      c.inflight.set(packetId, e)
      const topic = c2dTopic(deviceId, this.bag(deviceId, record))
      // the count is durable before the device can see the message
      this.track(this.db.put([deviceId, e.seq], record).then(() => {
        if (e.lock === lock && this.conns.get(connId) === c) this.hooks.publish(connId, topic, record.body, 1, packetId, e.deliveryCount > 1)
      }, (err: unknown) => {
        if (e.lock === lock) { e.lock = undefined; c.inflight.delete(packetId) }
        this.hooks.writeFailed(err)
      }))
    }
  }

  /**
   * What every delivery (a connection's, an HTTPS receive) checks of the next entry in queue order:
   * its record with the delivery counted, `skip` (locked, or dead-lettered now), or `stop` (not yet
   * durable: nothing after it may go first).
   */
  private deliverable(deviceId: string, e: Entry, now: number): Stored | 'skip' | 'stop' {
    if (e.lock) return 'skip'
    if (!e.durable) return 'stop'
    if (e.expiry <= now) { this.finish(deviceId, e, 'Expired'); return 'skip' }
    if (e.deliveryCount >= MAX_DELIVERY_COUNT) { this.finish(deviceId, e, 'DeliveryCountExceeded'); return 'skip' }
    const record = this.db.get([deviceId, e.seq]) as Stored | undefined
    if (!record) { this.drop(deviceId, e); return 'skip' }
    e.deliveryCount++
    record.deliveryCount = e.deliveryCount
    return record
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

  /**
   * Completed or dead-lettered: gone from the queue, with feedback when the sender asked for it, both
   * in one transaction. If that commit fails the record stays stored and is delivered again after a
   * restart (C2D is at least once); it is not retried before.
   */
  private finish(deviceId: string, e: Entry, outcome: Outcome | undefined): Promise<void> {
    // the depth is announced after the commit, with the feedback: a depth of 0 means every outcome is in the feedback queue
    this.drop(deviceId, e, false)
    if (e.lock) this.conns.get(e.lock.connId)?.inflight.delete(e.lock.packetId)
    const wanted = outcome !== undefined && (outcome === 'Success' ? e.ack === 'positive' || e.ack === 'full' : e.ack !== 'none' && e.ack !== 'positive')
    let feedback: { key: FeedbackKey; stored: StoredFeedback } | undefined
    if (outcome && (wanted || (outcome === 'Purged' && e.ack !== 'none'))) {
      const now = Date.now()
      feedback = {
        key: [now, this.stores.shardIndex, this.feedbackCounter++],
        stored: {
          record: {
            originalMessageId: e.messageId, enqueuedTimeUtc: new Date(now).toISOString(), statusCode: outcome,
            description: DESCRIPTION[outcome], deviceId, deviceGenerationId: e.generationId,
          },
          enqueued: now, deliveries: 0,
        },
      }
    }
    const key: [string, number] = [deviceId, e.seq]
    const done = this.stores.root.transaction(() => {
      this.db.removeSync(key)
      if (feedback) this.stores.feedback.putSync(feedback.key, feedback.stored)
    }).then(() => { if (feedback) this.hooks.feedback(feedback.key, feedback.stored) })
    done.catch((err: unknown) => this.hooks.writeFailed(err)).finally(() => this.hooks.count(deviceId, this.queues.get(deviceId)?.entries.length ?? 0))
    this.track(done)
    return done
  }

  /** Out of the queue; the new depth is announced now, or by the caller once its removal is committed. */
  private drop(deviceId: string, e: Entry, announce = true): void {
    const q = this.queues.get(deviceId)
    if (!q) return
    const i = q.entries.indexOf(e)
    if (i < 0) return
    q.entries.splice(i, 1)
    if (announce) this.hooks.count(deviceId, q.entries.length)
  }
}
