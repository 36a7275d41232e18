// One device's session over AMQP (azure-iot-device-amqp, Amqp and AmqpWs): the links it attaches
// to its own addresses, seen by the device edge as a connection like an MQTT one. Telemetry is
// settled (accepted) only after its commit; C2D deliveries are settled by the device (accept
// completes, reject dead-letters, release or modify abandons); twin requests are answered on the
// twin link, by correlation id; method calls go out on the methods link. The shards speak MQTT's
// terms, so subscriptions are MQTT topic filters: the C2D link and the desired-properties PUT are
// stored subscriptions, the methods link a local one.
//
// Bounds as for MQTT: at most MAX_UNACKED messages or MAX_TELEMETRY_BYTES_IN_FLIGHT bytes of
// telemetry awaiting commit (then no credit, and the connection is not read), 16 twin requests
// awaiting answers (the twin link's credit), and what the hub wrote and the client did not read.
import rhea from 'rhea'
import type { DeviceIdentity } from '../auth/authenticator.js'
import type { DeviceEdge } from '../edge/device-edge.js'
import type { C2dOutcome, EdgeConnection, EdgeConnectionState } from '../edge/edge-connection.js'
import type { Logger } from '../log.js'
import { MAX_RID_LENGTH, METHODS_FILTER, TWIN_DESIRED_FILTER, c2dFilter } from '../mqtt/iothub-topics.js'
import { MAX_TELEMETRY_BYTES_IN_FLIGHT, MAX_TWIN_IN_FLIGHT, WRITE_LIMIT_BYTES } from '../mqtt/device-connection.js'
import { MAX_MESSAGE_BYTES } from '../../shards/message-limits.js'
import { bodyBytes, idText } from './amqp-values.js'
import { moduleKey } from '../shard-protocol.js'
import type { DeviceLinkKind } from './device-addresses.js'
import { c2dToAmqp, parseTwinTopic, telemetryFromAmqp } from './device-messages.js'
import type { OutgoingBudget } from './outgoing-budget.js'
import { ReceiverCredit } from './receiver-credit.js'
import { ReadingPause } from '../edge/reading-pause.js'

/** Telemetry messages a device may have unsettled on its events link (and awaiting commit). */
export const TELEMETRY_CREDIT = 64
/** Method answers awaiting the hub's accept. */
const METHOD_ANSWER_CREDIT = 16
const MAX_UNACKED = 2048

/** What a device session needs of the AMQP connection that carries it. */
export interface AmqpDeviceHost {
  readonly transportKind: 'amqps' | 'amqpwss'
  readonly budget: OutgoingBudget
  readonly log: Logger
  /** the session wants the connection read, or not (any session holding it stops reading for all) */
  holdReading(session: AmqpDeviceSession, hold: boolean): void
  /** a link broke the protocol (a transfer without credit): the connection goes */
  violation(kind: 'transfer-without-credit' | 'deliveries-unsettled'): void
  sessionClosed(session: AmqpDeviceSession): void
}

interface TelemetryLink { receiver: rhea.Receiver; credit: ReceiverCredit }
interface PendingTelemetry { delivery: rhea.Delivery; credit: ReceiverCredit }

/** rhea's outgoing ring per session holds 2,048 deliveries; this many are kept free */
const RING_RESERVE = 64

/** A second link of a kind replaces the first, which is closed so nothing it held lingers. */
function replaced(old: rhea.link | undefined, link: rhea.link): void {
  if (old && old !== link && old.is_open()) old.close({ condition: 'amqp:link:stolen', description: 'another link of this kind attached for the device' })
}

/** Why the hub ended a session → the condition its links are detached with (what the SDK does next follows from it). */
function detachCondition(reason: string): string {
  if (reason.startsWith('taken over')) return 'amqp:link:stolen' // the SDK gives up rather than take it back
  if (reason === 'device deleted' || reason === 'module deleted') return 'amqp:not-found'
  if (reason === 'device disabled' || reason.includes('token')) return 'amqp:unauthorized-access'
  return 'amqp:link:detach-forced' // the SDK reconnects at once
}

export class AmqpDeviceSession implements EdgeConnection {
  readonly id: number
  state: EdgeConnectionState = 'authenticating'
  readonly clientId: string
  readonly clean = true
  readonly modelId = ''
  shard = -1
  readonly acceptedAt = Date.now()
  readonly keepAliveMs = 0
  lastPacketAt = Date.now()
  readonly writeBlockedFor = 0
  readonly subscriptions = new Set<string>()

  private readonly telemetryLinks = new Set<TelemetryLink>()
  private c2dSender: rhea.Sender | undefined
  private twinRequests: TelemetryLink | undefined
  private twinAnswers: rhea.Sender | undefined
  private methodRequests: rhea.Sender | undefined
  private methodAnswers: TelemetryLink | undefined
  /** links attached before the session opened: set up once it is */
  private waitingLinks: (() => void)[] = []

  private nextPacketId = 1
  private readonly pendingTelemetry = new Map<number, PendingTelemetry>()
  private telemetryBytes = 0
  private readonly c2dInFlight = new Map<rhea.Delivery, number>()
  /** twin requests awaiting the shard: rid → the correlation id as the device sent it */
  private readonly twinRids = new Map<string, unknown>()
  private nextSubscriptionId = 1
  private readonly subscriptionAnswers = new Map<number, (errorCode: number) => void>()

  private windowFull = false
  /** the tier's traffic shaping stops reading it for a while */
  private readonly shaping = new ReadingPause(() => this.updateReading())
  private held = false
  private draining = false
  private reading = true

  constructor(private readonly edge: DeviceEdge, private readonly host: AmqpDeviceHost, public identity: DeviceIdentity) {
    this.id = edge.newConnectionId()
    // a module's connection is known as `{device}/{module}`, as its MQTT client id is
    this.clientId = identity.module ? moduleKey(identity.device.deviceId, identity.module.moduleId) : identity.device.deviceId
  }

  get deviceId(): string { return this.identity.device.deviceId }
  get transportKind(): string { return this.host.transportKind }
  get readingPaused(): boolean { return !this.reading }

  /** Registers with the edge and opens the session in the device's shard (the newest connection takes over). */
  open(): void {
    this.edge.register(this)
    this.edge.openSession(this)
  }

  /** A renewed token for the same device: its expiry and generation. */
  renewed(identity: DeviceIdentity): void {
    this.identity = identity
    this.host.log.info('amqp device token renewed', { deviceId: this.deviceId })
  }

  // --- links ---

  /** A link of this device attached; `kind` is the hub's side of it. */
  attach(kind: DeviceLinkKind, link: rhea.link): void {
    if (this.state === 'closed') return
    if (this.state !== 'connected') {
      this.waitingLinks.push(() => this.attach(kind, link))
      return
    }
    switch (kind) {
      case 'telemetry': {
        const t = { receiver: link as rhea.Receiver, credit: this.credit(link as rhea.Receiver, TELEMETRY_CREDIT) }
        this.telemetryLinks.add(t)
        if (!this.reading) t.credit.hold(true)
        t.credit.open()
        break
      }
      case 'c2d': {
        const sender = link as rhea.Sender
        replaced(this.c2dSender, sender)
        this.c2dSender = sender
        for (const outcome of ['accepted', 'rejected', 'released', 'modified'] as const) {
          sender.on(outcome, (ctx: rhea.EventContext) => this.c2dSettled(ctx.delivery!, outcome))
        }
        this.storeSubscription([c2dFilter(this.deviceId)], true)
        break
      }
      case 'twin-requests':
        replaced(this.twinRequests?.receiver, link)
        this.twinRequests = { receiver: link as rhea.Receiver, credit: this.credit(link as rhea.Receiver, MAX_TWIN_IN_FLIGHT) }
        this.twinRequests.credit.open()
        break
      case 'twin-answers':
        replaced(this.twinAnswers, link)
        this.twinAnswers = link as rhea.Sender
        break
      case 'method-requests':
        replaced(this.methodRequests, link)
        this.methodRequests = link as rhea.Sender
        this.subscriptions.add(METHODS_FILTER)
        break
      case 'method-answers':
        replaced(this.methodAnswers?.receiver, link)
        this.methodAnswers = { receiver: link as rhea.Receiver, credit: this.credit(link as rhea.Receiver, METHOD_ANSWER_CREDIT) }
        this.methodAnswers.credit.open()
        break
    }
  }

  /** A link of this session went away (the client detached it, or the connection). */
  detached(link: rhea.link): void {
    for (const t of this.telemetryLinks) if (t.receiver === link) this.telemetryLinks.delete(t)
    for (const d of this.c2dInFlight.keys()) if (d.link === link) this.c2dInFlight.delete(d)
    if (link === this.c2dSender) {
      this.c2dSender = undefined
      // the shard ends the locks of this connection's deliveries when the subscription goes
      if (this.state === 'connected') this.storeSubscription([c2dFilter(this.deviceId)], false)
    }
    if (this.twinRequests?.receiver === link) this.twinRequests = undefined
    if (link === this.twinAnswers) this.twinAnswers = undefined
    if (link === this.methodRequests) {
      this.methodRequests = undefined
      this.subscriptions.delete(METHODS_FILTER)
    }
    if (this.methodAnswers?.receiver === link) this.methodAnswers = undefined
  }

  /** Whether any link of this session is still open. */
  get hasLinks(): boolean {
    return this.telemetryLinks.size > 0 || !!(this.c2dSender || this.twinRequests || this.twinAnswers || this.methodRequests || this.methodAnswers)
  }

  private credit(receiver: rhea.Receiver, window: number): ReceiverCredit {
    return new ReceiverCredit(receiver, window, () => this.host.violation('transfer-without-credit'))
  }

  // --- from the device ---

  /** A message on one of this session's links. */
  message(receiver: rhea.Receiver, msg: rhea.Message, delivery: rhea.Delivery): void {
    this.lastPacketAt = Date.now()
    if (this.twinRequests?.receiver === receiver) return this.twinRequest(msg, delivery)
    if (this.methodAnswers?.receiver === receiver) return this.methodAnswer(msg, delivery)
    for (const t of this.telemetryLinks) if (t.receiver === receiver) return this.telemetry(t, msg, delivery)
  }

  private telemetry(link: TelemetryLink, msg: rhea.Message, delivery: rhea.Delivery): void {
    if (!link.credit.arrived()) return
    // rhea frees a received delivery only once this side settles it too, pre-settled or not
    if (delivery.remote_settled) delivery.update(true)
    if (this.state !== 'connected' || this.draining) return // shutting down: never acknowledged, the device sends it again
    const t = telemetryFromAmqp(msg)
    if (t.size > MAX_MESSAGE_BYTES) {
      delivery.reject({ condition: 'amqp:link:message-size-exceeded', description: `the message is ${t.size} bytes; IoT Hub takes at most ${MAX_MESSAGE_BYTES}` })
      return link.credit.settled()
    }
    // a pre-settled transfer asks for no outcome: at most once, like MQTT's QoS 0
    let packetId = 0
    if (!delivery.remote_settled) {
      packetId = this.nextPacketId
      this.nextPacketId = this.nextPacketId >= 0x7fffffff ? 1 : this.nextPacketId + 1
      this.pendingTelemetry.set(packetId, { delivery, credit: link.credit })
      if (this.pendingTelemetry.size > MAX_UNACKED) this.setWindowFull(true)
    } else {
      link.credit.settled()
    }
    this.edge.telemetry(this, packetId, t.bag, t.body, null)
  }

  private twinRequest(msg: rhea.Message, delivery: rhea.Delivery): void {
    const credit = this.twinRequests!.credit
    if (!credit.arrived()) return
    delivery.accept() // pre-settled (the SDK's way) or not, rhea frees it once this side settles
    const rid = idText(msg.correlation_id)
    const annotations = (msg.message_annotations ?? {}) as Record<string, unknown>
    const operation = String(annotations.operation ?? '')
    const resource = String(annotations.resource ?? '')
    // the answer echoes the rid in a topic between the shard and here: long ones are refused (the SDKs send uuids)
    if (!rid || rid.length > MAX_RID_LENGTH) {
      this.host.log.info('amqp twin request without a usable correlation id', { deviceId: this.deviceId })
      return credit.settled()
    }
    this.twinRids.set(rid, msg.correlation_id)
    if (operation === 'GET' && resource === '') return this.edge.twinRequest(this, 'get', rid, Buffer.alloc(0))
    if (operation === 'PATCH' && resource === '/properties/reported') return this.edge.twinRequest(this, 'patch', rid, bodyBytes(msg.body))
    if ((operation === 'PUT' || operation === 'DELETE') && resource === '/notifications/twin/properties/desired') {
      return this.storeSubscription([TWIN_DESIRED_FILTER], operation === 'PUT', (errorCode) => {
        this.twinAnswer(rid, errorCode === 0 ? 200 : 500, errorCode === 0 ? undefined : Buffer.from(JSON.stringify({ errorCode, message: 'the subscription could not be stored' })))
      })
    }
    this.twinAnswer(rid, 400, Buffer.from(JSON.stringify({ errorCode: 400004, message: `unsupported twin operation ${operation} ${resource}`.trim() })))
  }

  private methodAnswer(msg: rhea.Message, delivery: rhea.Delivery): void {
    const credit = this.methodAnswers!.credit
    if (!credit.arrived()) return
    delivery.accept()
    credit.settled()
    const rid = idText(msg.correlation_id)
    const status = Number((msg.application_properties as Record<string, unknown> | undefined)?.['IoThub-status'])
    if (!rid || !Number.isInteger(status)) {
      this.host.log.info('amqp method answer without a correlation id or IoThub-status', { deviceId: this.deviceId })
      return
    }
    this.edge.methodResponse(this, rid, status, bodyBytes(msg.body))
  }

  private c2dSettled(delivery: rhea.Delivery, outcome: 'accepted' | 'rejected' | 'released' | 'modified'): void {
    const packetId = this.c2dInFlight.get(delivery)
    if (packetId === undefined) return
    this.c2dInFlight.delete(delivery)
    const settle: C2dOutcome = outcome === 'accepted' ? 'complete' : outcome === 'rejected' ? 'reject' : 'abandon'
    if (this.state === 'connected') this.edge.c2dSettled(this, packetId, settle)
  }

  // --- from the shard (EdgeConnection) ---

  sessionOpened(_sessionPresent: boolean, _filters: string[], errorCode = 0): void {
    if (this.state !== 'authenticating') return
    if (errorCode !== 0) return this.close('the session could not be stored', { errorCode })
    this.state = 'connected'
    const waiting = this.waitingLinks
    this.waitingLinks = []
    for (const attach of waiting) attach()
  }

  acked(packetIds: number[]): void {
    for (const id of packetIds) {
      const p = this.pendingTelemetry.get(id)
      if (!p) continue
      this.pendingTelemetry.delete(id)
      p.delivery.accept()
      p.credit.settled()
    }
    this.checkWindow()
  }

  refused(packetId: number, code: number, message: string): void {
    const p = this.pendingTelemetry.get(packetId)
    if (!p) return
    this.pendingTelemetry.delete(packetId)
    // retried by the SDK (InternalServerError), which is what a full or failing disk wants
    p.delivery.reject({ condition: 'amqp:internal-error', description: `${message} (${code})` })
    p.credit.settled()
    this.checkWindow()
  }

  telemetrySent(bytes: number): void {
    this.telemetryBytes += bytes
    if (this.telemetryBytes > MAX_TELEMETRY_BYTES_IN_FLIGHT) this.setWindowFull(true)
  }

  telemetryFinished(bytes: number): void {
    this.telemetryBytes -= bytes
    this.checkWindow()
  }

  deliver(topic: string, payload: Uint8Array, qos: number, packetId: number, dup: boolean): void {
    if (qos === 1) {
      // a C2D message; without a link (it just detached) the unsubscription ends its lock
      if (!this.c2dSender?.is_open()) return
      const delivery = this.send(this.c2dSender, c2dToAmqp(topic, payload, dup))
      if (delivery) this.c2dInFlight.set(delivery, packetId)
      return
    }
    const push = parseTwinTopic(topic)
    if (!push) return
    if (push.kind === 'answer') return this.twinAnswer(push.rid, push.status, Buffer.from(payload), push.version)
    if (this.twinAnswers?.is_open()) {
      this.send(this.twinAnswers, { message_annotations: { version: push.version }, body: rhea.message.data_section(Buffer.from(payload)) }, true)
    }
  }

  methodRequest(methodName: string, rid: string, payload: Buffer): void {
    if (!this.methodRequests?.is_open()) return // the call times out, as it would for a device that went away
    this.send(this.methodRequests, {
      correlation_id: rid, application_properties: { 'IoThub-methodname': methodName }, body: rhea.message.data_section(payload),
    }, true)
  }

  subscriptionStored(packetId: number, errorCode: number): void {
    const answer = this.subscriptionAnswers.get(packetId)
    if (!answer) return
    this.subscriptionAnswers.delete(packetId)
    answer(errorCode)
  }

  hold(on: boolean): void {
    this.held = on
    this.updateReading()
  }

  stopReading(): void {
    this.draining = true
    this.updateReading()
  }

  close(reason: string, fields?: Record<string, unknown>, _graceful = false): void {
    if (this.state === 'closed') return
    const wasConnected = this.state === 'connected'
    this.state = 'closed'
    this.shaping.clear()
    this.waitingLinks = []
    this.subscriptionAnswers.clear()
    if (!this.reading) this.host.holdReading(this, false)
    const error = { condition: detachCondition(reason), description: reason }
    const links: (rhea.link | undefined)[] = [...[...this.telemetryLinks].map((t) => t.receiver), this.c2dSender, this.twinRequests?.receiver, this.twinAnswers,
      this.methodRequests, this.methodAnswers?.receiver]
    for (const link of links) if (link?.is_open()) link.close(error)
    this.telemetryLinks.clear()
    this.pendingTelemetry.clear()
    this.edge.closed(this, reason, fields, wasConnected)
    this.host.sessionClosed(this)
  }

  // --- inside ---

  private twinAnswer(rid: string, status: number, body?: Buffer, version?: number): void {
    const correlation = this.twinRids.get(rid) ?? rid
    this.twinRids.delete(rid)
    this.twinRequests?.credit.settled()
    if (!this.twinAnswers?.is_open()) return
    const annotations: Record<string, number> = { status }
    if (version !== undefined) annotations.version = version
    this.send(this.twinAnswers, { correlation_id: correlation, message_annotations: annotations, ...(body && body.length > 0 ? { body: rhea.message.data_section(body) } : {}) } as rhea.Message, true)
  }

  /** An MQTT-style subscription change through the shard; `answered` runs once it is stored (or failed). */
  private storeSubscription(filters: string[], add: boolean, answered?: (errorCode: number) => void): void {
    const id = this.nextSubscriptionId++
    this.subscriptionAnswers.set(id, (errorCode) => {
      if (errorCode !== 0 && !answered) return this.close('the subscription could not be stored', { errorCode })
      answered?.(errorCode)
    })
    if (add) {
      for (const f of filters) this.subscriptions.add(f)
      this.edge.subscribe(this, filters.map((f) => [f, 1]), id)
    } else {
      for (const f of filters) this.subscriptions.delete(f)
      this.edge.unsubscribe(this, filters, id)
    }
  }

  /**
   * Encodes and sends; what the client has not read counts against it, as for MQTT. `settled`:
   * sent pre-settled (twin answers and method requests ask for no outcome), so rhea can let it go
   * once written. rhea keeps a session's deliveries in a ring of 2,048 freed only from its oldest end:
   * one the device never settles holds everything behind it, and an overflow would wedge the
   * session for good, so a session near the end of its ring is closed (the device reconnects).
   */
  private send(sender: rhea.Sender, msg: rhea.Message, settled = false): rhea.Delivery | undefined {
    const ring = (sender.session as unknown as { outgoing: { deliveries: { capacity: number; size: number } } }).outgoing.deliveries
    if (ring.capacity - ring.size <= RING_RESERVE) {
      // closing the links alone would leave the ring (and what it holds) to the rhea session: the connection goes
      this.close('the device leaves what the hub sends unsettled', { unsettledDeliveries: ring.size })
      this.host.violation('deliveries-unsettled')
      return undefined
    }
    const bytes = rhea.message.encode(msg)
    const delivery = sender.send(bytes, undefined, 0)
    if (settled) (delivery as { settled: boolean }).settled = true
    this.host.budget.queued(delivery, bytes.length)
    const held = this.host.budget.heldBytes()
    if (held > WRITE_LIMIT_BYTES) {
      this.close('the client does not read what the hub sends', { bufferedBytes: held })
      return undefined
    }
    return delivery
  }

  private setWindowFull(on: boolean): void {
    if (this.windowFull === on) return
    this.windowFull = on
    this.updateReading()
  }

  private checkWindow(): void {
    if (this.windowFull && this.pendingTelemetry.size <= MAX_UNACKED / 2 && this.telemetryBytes <= MAX_TELEMETRY_BYTES_IN_FLIGHT / 2) this.setWindowFull(false)
  }

  pauseReadingFor(ms: number): void {
    if (this.state !== 'closed') this.shaping.for(ms)
  }

  throttled(code: number, message: string, packetId?: number): void {
    if (this.state === 'authenticating') return this.close(message, { errorCode: code })
    const p = packetId === undefined ? undefined : this.pendingTelemetry.get(packetId)
    if (!p) return
    this.pendingTelemetry.delete(packetId!)
    // the SDK maps this condition to its ThrottlingError and retries
    const condition = code === 403002 ? 'amqp:resource-limit-exceeded' : code >= 503000 ? 'com.microsoft:server-busy' : 'com.microsoft:device-container-throttled'
    p.delivery.reject({ condition, description: message })
    p.credit.settled()
    this.checkWindow()
  }

  private updateReading(): void {
    const reading = !(this.windowFull || this.held || this.shaping.active || this.draining)
    if (reading === this.reading || this.state === 'closed') return
    this.reading = reading
    for (const t of this.telemetryLinks) t.credit.hold(!reading)
    this.host.holdReading(this, !reading)
  }
}
