// The IoT Hub service client's AMQP links: C2D messages sent to `/messages/devicebound` go into the
// device's queue (accepted once stored, rejected with the condition the client maps to its error
// type), and `/messages/serviceBound/feedback` and `/messages/serviceBound/filenotifications` deliver
// the feedback and file-notification queues, an accept completing the records and a release putting
// them back, while the connection has room for more output.
import rhea from 'rhea'
import type { FeedbackQueue, ServiceBoundQueue } from '../c2d/service-bound-queue.js'
import type { Logger } from '../log.js'
import type { DeviceRegistry } from '../registry/device-registry.js'
import { HubError } from '../rest/hub-error.js'
import { clientKeyed } from '../mqtt/property-bag.js'
import type { ShardPool } from '../shard-pool.js'
import type { OutgoingRoom } from './outgoing-budget.js'
import { bodyBytes, hubErrorCondition as condition, idText } from './amqp-values.js'
import type { HubThrottles } from '../throttle/hub-throttles.js'

export const C2D_ADDRESS = '/messages/devicebound'
export const FEEDBACK_ADDRESS = '/messages/serviceBound/feedback'
export const FILE_NOTIFICATIONS_ADDRESS = '/messages/serviceBound/filenotifications'
const ACKS = new Set(['none', 'positive', 'negative', 'full'])

/** What a service-bound link delivers: its queue, and how its messages are typed. */
interface ServiceBoundSource {
  queue: ServiceBoundQueue<{ deviceId: string }>
  contentType: string
  /** feedback is a JSON array of records; a file notification is one JSON object */
  single: boolean
}

export class ServiceLinks {
  /** service-bound links, their source and their connection's output */
  private readonly feedbackSenders = new Map<rhea.Sender, { room: OutgoingRoom; source: ServiceBoundSource }>()
  private readonly waitingForRoom = new Set<rhea.Sender>()
  private readonly pumping = new Set<rhea.Sender>()
  private readonly locks = new WeakMap<rhea.Delivery, { queue: ServiceBoundSource['queue']; lock: string }>()
  private readonly timer: NodeJS.Timeout
  private readonly sources: Record<string, ServiceBoundSource>

  /** `hubName`: feedback messages carry it as their user id, as Azure's do */
  constructor(private readonly registry: DeviceRegistry, private readonly shards: ShardPool, feedback: FeedbackQueue, private readonly log: Logger,
    private readonly hubName: string, private readonly throttles?: HubThrottles, fileNotifications?: ServiceBoundQueue<{ deviceId: string }>) {
    this.sources = { [FEEDBACK_ADDRESS]: { queue: feedback, contentType: 'application/vnd.microsoft.iothub.feedback.json', single: false } }
    if (fileNotifications) this.sources[FILE_NOTIFICATIONS_ADDRESS] = { queue: fileNotifications, contentType: 'application/vnd.microsoft.iothub.filenotification.json', single: true }
    // records appear as devices settle their messages and finish uploads: offer them once a second
    this.timer = setInterval(() => {
      for (const s of this.feedbackSenders.keys()) {
        try {
          this.pumpFeedback(s)
        } catch (e) {
          this.log.error('amqp feedback failed', { error: e as Error })
        }
      }
    }, 1000)
    this.timer.unref()
  }

  /** A C2D message from the service client. */
  async c2d(msg: rhea.Message, delivery: rhea.Delivery): Promise<void> {
    try {
      const m = /^\/devices\/([^/]+)\/messages\/devicebound$/.exec(String(msg.to ?? ''))
      // Azure answers a bad `to` as an operation it cannot do (400003 InvalidOperation)
      if (!m) throw new HubError(400003, `'to' must be /devices/{deviceId}/messages/devicebound (got ${JSON.stringify(msg.to)})`)
      const deviceId = decodeURIComponent(m[1]!)
      const device = this.registry.get(deviceId)
      if (!device) throw new HubError(404001, `Device ${deviceId} not registered`)
      // the tier applies as to REST sends: Basic lacks C2D, and sends are throttled
      if (this.throttles?.limits.basic) throw new HubError(403010, `cloud-to-device messages are not available on tier ${this.throttles.limits.tier}`)
      await this.throttles?.admitRequest('c2dSends')
      const app = { ...((msg.application_properties ?? {}) as Record<string, unknown>) }
      const ack = String(app['iothub-ack'] ?? 'none').toLowerCase()
      delete app['iothub-ack']
      if (!ACKS.has(ack)) throw new HubError(400004, 'iothub-ack must be none, positive, negative or full')
      const properties = clientKeyed()
      for (const [k, v] of Object.entries(app)) properties[k] = String(v)
      const send: Record<string, unknown> = { ack, properties, body: bodyBytes(msg.body) }
      const expiry = msg.absolute_expiry_time instanceof Date ? msg.absolute_expiry_time.getTime() : undefined
      if (expiry !== undefined && expiry > 0) send.expiry = expiry
      for (const [field, value] of [['messageId', idText(msg.message_id)], ['correlationId', idText(msg.correlation_id)],
        ['userId', msg.user_id === undefined ? undefined : String(msg.user_id)], ['contentType', msg.content_type], ['contentEncoding', msg.content_encoding]] as const) {
        if (value !== undefined && value !== null) send[field] = String(value)
      }
      await this.shards.request('c2d.send', deviceId, device.generationId, send)
      delivery.accept()
    } catch (e) {
      if (!(e instanceof HubError)) this.log.error('amqp c2d failed', { error: e as Error })
      delivery.reject(condition(e))
    }
  }

  /** A receiver attached to a service-bound address; false when that queue does not exist here (the link stays quiet). */
  serviceBoundAttached(sender: rhea.Sender, room: OutgoingRoom, address: string): boolean {
    const source = this.sources[address]
    if (!source) return false
    this.feedbackSenders.set(sender, { room, source })
    this.pumpFeedback(sender)
    return true
  }

  detached(sender: rhea.Sender): void {
    this.feedbackSenders.delete(sender)
    this.waitingForRoom.delete(sender)
  }

  /** Every feedback link of a connection that is gone. */
  connectionClosed(connection: rhea.Connection): void {
    for (const s of this.feedbackSenders.keys()) if (s.connection === connection) this.detached(s)
  }

  /** Offers feedback while the receiver has credit; one receive at a time per link (each commits its delivery count). */
  pumpFeedback(sender: rhea.Sender): void {
    if (!this.feedbackSenders.has(sender) || this.pumping.has(sender)) return
    this.pumping.add(sender)
    void this.pumpLoop(sender).catch((e: unknown) => {
      if (!(e instanceof HubError)) this.log.error('feedback delivery failed', { error: e as Error })
    }).finally(() => this.pumping.delete(sender))
  }

  private async pumpLoop(sender: rhea.Sender): Promise<void> {
    const link = this.feedbackSenders.get(sender)
    if (!link) return
    const { room, source } = link
    while (this.feedbackSenders.has(sender) && sender.sendable()) {
      if (!room.hasRoom()) {
        if (!this.waitingForRoom.has(sender)) {
          this.waitingForRoom.add(sender)
          room.whenRoom(() => { if (this.waitingForRoom.delete(sender)) this.pumpFeedback(sender) })
        }
        return
      }
      const m = await source.queue.receive()
      if (!m) return
      if (!this.feedbackSenders.has(sender) || !sender.sendable()) {
        source.queue.abandon(m.lockToken)
        return
      }
      const bytes = rhea.message.encode({
        message_id: m.messageId, user_id: Buffer.from(this.hubName), content_type: source.contentType,
        body: rhea.message.data_section(Buffer.from(JSON.stringify(source.single ? m.records[0] : m.records))),
      })
      const d = sender.send(bytes, undefined, 0)
      room.queued(d, bytes.length)
      this.locks.set(d, { queue: source.queue, lock: m.lockToken })
    }
  }

  /** The service client settled a feedback message. */
  settled(delivery: rhea.Delivery, outcome: 'accepted' | 'rejected' | 'released'): void {
    const held = this.locks.get(delivery)
    if (!held) return
    this.locks.delete(delivery)
    try {
      if (outcome === 'released') held.queue.abandon(held.lock)
      // rejected: Azure dead-letters it, which for service-bound queues means gone
      else held.queue.complete(held.lock).catch(() => { /* not removed: offered again when the lock runs out */ })
    } catch {
      // the lock ran out first: the records are offered again anyway
    }
  }

  close(): void {
    clearInterval(this.timer)
  }
}
