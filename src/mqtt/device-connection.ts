// One device's MQTT 3.1.1 connection, after IoT Hub's rules: CONNECT with a SAS password, telemetry
// on the device's own events topic only, QoS 2 closes the connection, retain is not stored but
// flagged, a will is sent as telemetry on an ungraceful close. `$iothub/...` topics (twins, method
// answers) go to the edge; PUBACKs complete C2D deliveries.
//
// Every buffer of a connection has a bound: what it sends before it is authenticated, what it sends
// while it should be waiting (messages awaiting commit, twin requests awaiting answers, packets
// before CONNACK), and what the hub has written that it has not read. Past a soft bound the hub
// stops reading it; past a hard one, or if it does not drain in time, the connection is closed.
import mqttPacket from 'mqtt-packet'
import { DeviceAuthError, type DeviceIdentity } from '../auth/authenticator.js'
import { FrameError, type FrameHandler } from './framer.js'
import * as packets from './packets.js'
import type { MqttTransport } from './transport.js'
import type { DeviceEdge } from '../edge/device-edge.js'
import type { EdgeConnection } from '../edge/edge-connection.js'
import { methodRequestTopic, TWIN_RESPONSE_PREFIX } from './iothub-topics.js'
import { ReadingPause } from '../edge/reading-pause.js'

/** The largest packet worth reading: a 256 KB message plus a full topic and headers. */
export const MAX_PACKET_BYTES = 256 * 1024 + 65_535 + 16
/** Pause reading past this many QoS 1 messages waiting for their commit, or this many bytes of telemetry (QoS 0 and 1). */
const MAX_UNACKED = 2048
export const MAX_TELEMETRY_BYTES_IN_FLIGHT = 2 * 1024 * 1024
/** Twin requests, and SUBSCRIBEs / UNSUBSCRIBEs, waiting for their answer before the hub stops reading the connection. */
export const MAX_TWIN_IN_FLIGHT = 16
export const MAX_SUBSCRIBES_IN_FLIGHT = 16
/**
 * What a client may have waiting, counting each packet's bytes plus PACKET_OVERHEAD_BYTES for the
 * hub's record of it: packets sent after CONNECT before its CONNACK, or read after the hub stopped
 * reading it (the rest of the read that filled its window).
 */
export const MAX_EARLY_BYTES = 1024 * 1024
const PACKET_OVERHEAD_BYTES = 64
/** A CONNECT up to this size is read freely; a larger one (a big will) needs the hub's pre-auth budget. */
export const PREAUTH_FREE_BYTES = 16 * 1024
/** Written but not yet read by the client: stop reading it above the first, close it above the second. */
export const WRITE_HIGH_WATER_BYTES = 512 * 1024
export const WRITE_LIMIT_BYTES = 4 * 1024 * 1024
/** A client whose reading was stopped because it does not read has this long to catch up. */
export const WRITE_DRAIN_TIMEOUT_MS = 30_000
/**
 * A WebSocket cannot be paused: a client may send this much while the hub waits for it to stop
 * (its window is full, the hub is holding everyone); past it the connection is closed, the way
 * Azure closes a device it throttles.
 */
export const UNPAUSABLE_SLACK_BYTES = 1024 * 1024

type State = 'awaiting-connect' | 'authenticating' | 'connected' | 'closed'

/** The property bag of an events topic; a module's output events end in `/` (`%24.on=out1/`), which is not part of it. */
function bagOf(rest: string): string {
  return rest.endsWith('/') ? rest.slice(0, -1) : rest
}

/** `model-id` from the username's query (the SDKs do not URL-encode it: `dtmi:com:example:Thermostat;1`). */
export function modelIdOf(username: string): string {
  const q = username.indexOf('?') >= 0 ? username.slice(username.indexOf('?') + 1) : username.slice(username.lastIndexOf('/') + 1)
  for (const pair of q.split('&')) {
    if (!pair.startsWith('model-id=')) continue
    const raw = pair.slice('model-id='.length)
    try { return decodeURIComponent(raw).slice(0, 512) } catch { return raw.slice(0, 512) }
  }
  return ''
}

export class DeviceConnection implements FrameHandler, EdgeConnection {
  state: State = 'awaiting-connect'
  identity: DeviceIdentity | undefined
  clientId = ''
  deviceId = ''
  clean = true
  /** the IoT Plug and Play model id in the CONNECT's username (`&model-id=`), or '' */
  modelId = ''
  keepAliveMs = 0
  lastPacketAt = Date.now()
  unacked = 0
  /** bytes of telemetry sent to the shard and not yet finished (QoS 0 and 1) */
  private telemetryBytes = 0
  /** the shard that owns this device, once the session is opened */
  shard = -1
  /** topic filters of this connection's session (resumed ones included) */
  readonly subscriptions = new Set<string>()
  /** why the hub is not reading: each reason on its own, reading resumes when none is left */
  private windowFull = false
  private held = false
  /** the tier's traffic shaping stops reading it for a while */
  private readonly shaping = new ReadingPause(() => this.updateReading())
  private writeBlockedSince = 0
  private twinsInFlight = 0
  /** C2D PUBLISHes the hub sent that have not been PUBACKed */
  private c2dAwaitingPuback = 0
  private draining = false
  private reading = true
  /** bytes a client that cannot be paused sent since the hub stopped reading it */
  private unpausedBytes = 0
  /**
   * Packets that must wait, replayed in order: those between CONNECT and CONNACK (until the session
   * is open), and those read after the hub stopped reading (a read holds many packets; stopping the
   * socket only stops the next read).
   */
  private early: { replay: () => void; bytes: number }[] = []
  private earlyBytes = 0
  private replaying = false
  /** SUBACK / UNSUBACK bodies waiting for the shard to commit the change, by packet id */
  private readonly pendingAcks = new Map<number, Buffer>()
  readonly acceptedAt = Date.now()
  private sawFirstByte = false
  /** the first bytes, until the CONNECT's remaining length is known */
  private connectHeader: number[] | null = []
  private preauthReserved = 0
  private eventsPrefix = ''
  private will: { payload: Buffer; bag: string; retain: boolean } | undefined
  private readonly framer: ReturnType<DeviceEdge['createFramer']>
  private expiryTimer: NodeJS.Timeout | undefined

  constructor(readonly id: number, readonly transport: MqttTransport, private readonly edge: DeviceEdge,
    /** releases this connection's place among its address's unauthenticated connections */
    private admissionTicket?: () => void) {
    this.framer = edge.createFramer(MAX_PACKET_BYTES)
    transport.onDrain(() => this.drained())
  }

  /** Bytes from the transport. Malformed input closes this connection only. */
  receive(chunk: Buffer): void {
    if (this.state === 'closed' || this.draining) return
    this.lastPacketAt = Date.now()
    if (!this.reading && !this.transport.pausable) {
      this.unpausedBytes += chunk.length
      if (this.unpausedBytes > UNPAUSABLE_SLACK_BYTES) {
        return this.close('sent too much while the hub was holding it back', { bytes: this.unpausedBytes })
      }
    }
    if (this.state === 'awaiting-connect' && !this.admitConnect(chunk)) return
    try {
      this.framer.push(chunk, this)
    } catch (e) {
      // whatever a client sends, it costs at most its own connection, never the hub
      if (e instanceof FrameError) this.close(`malformed packet: ${e.message}`)
      else this.close('internal error on this connection', { error: e as Error })
    }
  }

  /**
   * Before authentication a client may make the hub hold only a small CONNECT; a larger one (a big
   * will) is read only while the hub-wide budget for such packets allows it.
   */
  private admitConnect(chunk: Buffer): boolean {
    // the first packet must be CONNECT: anything else (an HTTP request, a probe) is dropped at once
    // rather than waiting for a length that may never come
    if (!this.sawFirstByte && chunk.length > 0) {
      this.sawFirstByte = true
      if (chunk[0] !== 0x10) { this.close('first packet is not CONNECT'); return false }
    }
    const header = this.connectHeader
    if (!header) return true
    for (let i = 0; i < chunk.length && header.length < 5; i++) {
      header.push(chunk[i]!)
      if (header.length >= 2 && (chunk[i]! & 0x80) === 0) break
    }
    if (header.length < 2 || (header[header.length - 1]! & 0x80) !== 0) return true // length not complete yet (the framer rejects a fifth byte)
    let remaining = 0
    for (let i = header.length - 1; i >= 1; i--) remaining = remaining * 128 + (header[i]! & 0x7f)
    this.connectHeader = null
    if (remaining <= PREAUTH_FREE_BYTES || remaining > MAX_PACKET_BYTES) return true // the framer refuses the oversized
    if (!this.edge.reservePreauth(remaining)) {
      this.close('server busy: too many large CONNECT packets are being read', { bytes: remaining })
      return false
    }
    this.preauthReserved = remaining
    return true
  }

  private releasePreauth(): void {
    if (this.preauthReserved > 0) this.edge.releasePreauth(this.preauthReserved)
    this.preauthReserved = 0
  }

  /** Whether a packet just framed must wait: before CONNACK, or while the hub is not reading this connection. */
  private mustWait(): boolean {
    if (this.state === 'authenticating') return true
    return this.state === 'connected' && !this.replaying && (!this.reading || this.early.length > 0)
  }

  publish(topic: string, payload: Buffer, qos: number, packetId: number, retain: boolean): void {
    if (this.mustWait()) {
      // MQTT lets a client send right after CONNECT; keep it until the session is open (the copy
      // because a framer may reuse the bytes of a packet that spanned reads)
      const copy = Buffer.from(payload)
      return this.defer(() => this.publish(topic, copy, qos, packetId, retain), topic.length + copy.length)
    }
    if (this.state !== 'connected') return this.close('PUBLISH before CONNACK')
    if (qos === 2) return this.close('QoS 2 is not supported by IoT Hub')
    if (topic.startsWith('$iothub/')) {
      if (qos === 1) this.send(packets.pubacks([packetId]))
      return this.edge.iothubPublish(this, topic, payload)
    }
    if (!topic.startsWith(this.eventsPrefix) && topic !== this.eventsPrefix.slice(0, -1)) {
      return this.close(topic.startsWith('devices/') && !topic.startsWith(`devices/${this.deviceId}/`)
        ? 'publish to another device\'s topic' : topic.startsWith(`devices/${this.deviceId}/modules/`) ? 'publish to another module\'s topic' : 'publish to an unsupported topic', { topic })
    }
    this.sendTelemetry(bagOf(topic.slice(this.eventsPrefix.length)), payload, qos === 1 ? packetId : 0, retain ? { 'mqtt-retain': 'true' } : null)
  }

  private sendTelemetry(bag: string, payload: Buffer, packetId: number, extra: Record<string, string> | null): void {
    if (packetId !== 0 && ++this.unacked > MAX_UNACKED && !this.windowFull) {
      this.windowFull = true
      this.updateReading()
    }
    this.edge.telemetry(this, packetId, bag, payload, extra)
  }

  /** Called by the edge when the shard committed messages of this connection: their PUBACKs leave in one write. */
  acked(packetIds: number[]): void {
    this.unacked -= packetIds.length
    this.checkWindow()
    this.send(packets.pubacks(packetIds))
  }

  get transportKind(): string { return this.transport.kind }

  /** MQTT 3.1.1 has no negative acknowledgement: a message the hub did not store closes the connection. */
  refused(_packetId: number, code: number, message: string): void {
    this.close('message rejected', { errorCode: code, error: message })
  }

  /** A shard's PUBLISH to this device (C2D, twin responses, desired-property patches). */
  deliver(topic: string, payload: Uint8Array, qos: number, packetId: number, dup: boolean): void {
    if (topic.startsWith(TWIN_RESPONSE_PREFIX)) this.twinAnswered()
    if (qos === 1) this.c2dSent()
    let packet: Buffer
    try {
      packet = packets.publish(topic, payload, qos, packetId, dup)
    } catch (e) {
      return this.close('the hub cannot encode a packet for this connection', { error: e as Error })
    }
    this.send(packet)
  }

  methodRequest(methodName: string, rid: string, payload: Buffer): void {
    this.send(packets.publish(methodRequestTopic(methodName, rid), payload, 0, 0, false))
  }

  /** The edge sent a message of this connection to its shard. */
  telemetrySent(bytes: number): void {
    this.telemetryBytes += bytes
    if (this.telemetryBytes > MAX_TELEMETRY_BYTES_IN_FLIGHT && !this.windowFull) {
      this.windowFull = true
      this.updateReading()
    }
  }

  /** The shard finished with messages of this connection (stored, refused or dropped). */
  telemetryFinished(bytes: number): void {
    this.telemetryBytes -= bytes
    this.checkWindow()
  }

  private checkWindow(): void {
    if (this.windowFull && this.unacked <= MAX_UNACKED / 2 && this.telemetryBytes <= MAX_TELEMETRY_BYTES_IN_FLIGHT / 2) {
      this.windowFull = false
      this.updateReading()
    }
  }

  /** The edge's hub-wide backpressure: hold reading while the shards catch up. */
  hold(on: boolean): void {
    if (this.held === on) return
    this.held = on
    this.updateReading()
  }

  pauseReadingFor(ms: number): void {
    if (this.state !== 'closed') this.shaping.for(ms)
  }

  throttled(code: number, message: string): void {
    if (this.state === 'authenticating') return this.refuse(packets.CONNACK_SERVER_UNAVAILABLE, message, { errorCode: code })
    this.close(code >= 503000 ? 'server busy' : 'throttled', { errorCode: code, error: message })
  }

  /** A twin request went to the shard; past MAX_TWIN_IN_FLIGHT unanswered ones the hub stops reading. */
  twinRequested(): void {
    if (++this.twinsInFlight === MAX_TWIN_IN_FLIGHT) this.updateReading()
  }

  twinAnswered(): void {
    if (this.twinsInFlight === 0) return
    if (this.twinsInFlight-- === MAX_TWIN_IN_FLIGHT) this.updateReading()
  }

  private updateReading(): void {
    const stop = this.windowFull || this.held || this.shaping.active || this.writeBlockedSince > 0 || this.twinsInFlight >= MAX_TWIN_IN_FLIGHT
      || this.pendingAcks.size >= MAX_SUBSCRIBES_IN_FLIGHT || this.draining
    if (stop === !this.reading || this.state === 'closed') return
    this.reading = !stop
    if (stop) {
      this.unpausedBytes = 0
      this.transport.pause()
    } else {
      // what was read before the stop goes first; it may stop reading again
      this.replayWaiting()
      if (this.reading && (this.state as State) !== 'closed') this.transport.resume() // replay may have closed it
    }
  }

  /**
   * Every write to the client goes through here. Past the high-water mark the hub stops reading
   * the client until it has read what it was sent; past the limit the connection is closed.
   */
  send(bytes: Buffer): void {
    if (this.state === 'closed') return
    this.transport.write(bytes)
    const buffered = this.transport.bufferedBytes
    if (buffered > WRITE_LIMIT_BYTES) return this.close('the client does not read what the hub sends', { bufferedBytes: buffered })
    if (buffered > WRITE_HIGH_WATER_BYTES && this.writeBlockedSince === 0) {
      this.writeBlockedSince = Date.now()
      this.updateReading()
    }
  }

  private drained(): void {
    if (this.writeBlockedSince === 0 || this.transport.bufferedBytes > WRITE_HIGH_WATER_BYTES / 2) return
    this.writeBlockedSince = 0
    this.updateReading()
  }

  /** For the edge's sweep: a client that stopped reading what it is sent does not hold its buffer for ever. */
  get writeBlockedFor(): number {
    return this.writeBlockedSince === 0 ? 0 : Date.now() - this.writeBlockedSince
  }

  /** The hub sent a QoS 1 PUBLISH (a C2D message): one PUBACK for it is expected. */
  c2dSent(): void {
    this.c2dAwaitingPuback++
  }

  other(type: number, packet: Buffer): void {
    // the packets a busy client sends most, decoded by hand (a PUBACK flood must not cost a parser each)
    if (packet.length === 4 && packet[0] === 0x40 && packet[1] === 2 && this.state === 'connected' && !this.mustWait()) {
      // completes a C2D message; one the hub did not send (or already completed) is not passed on
      if (this.c2dAwaitingPuback > 0) {
        this.c2dAwaitingPuback--
        this.edge.c2dSettled(this, packet.readUInt16BE(2))
      }
      return
    }
    // control packets are rare: a fresh parser each time keeps a bad packet from poisoning the next
    let decoded: mqttPacket.Packet | undefined
    let error: Error | undefined
    const parser = mqttPacket.parser({ protocolVersion: 4 })
    parser.on('packet', (p: mqttPacket.Packet) => { decoded ??= p })
    parser.on('error', (e: Error) => { error ??= e })
    parser.parse(packet)
    if (error || !decoded) throw new FrameError(error?.message ?? `undecodable packet of type ${type}`)
    if (decoded.cmd !== 'connect' && this.mustWait()) {
      const copy = Buffer.from(packet)
      return this.defer(() => this.other(type, copy), copy.length)
    }
    switch (decoded.cmd) {
      case 'connect': return this.onConnect(decoded)
      case 'subscribe': return this.onSubscribe(decoded)
      case 'unsubscribe': return this.onUnsubscribe(decoded)
      case 'pingreq': if (this.state === 'connected') this.send(packets.PINGRESP); return
      case 'disconnect':
        this.will = undefined
        return this.close('client disconnected', undefined, true)
      case 'puback':
        // completes a C2D message (the only QoS 1 PUBLISH the hub sends); the usual ones took the fast path above
        if (this.state === 'connected' && this.c2dAwaitingPuback > 0) {
          this.c2dAwaitingPuback--
          this.edge.c2dSettled(this, decoded.messageId!)
        }
        return
      default:
        return this.close(`unexpected ${decoded.cmd} packet`)
    }
  }

  private onConnect(p: mqttPacket.IConnectPacket): void {
    if (this.state !== 'awaiting-connect') return this.close('second CONNECT on one connection')
    this.state = 'authenticating'
    this.releasePreauth()
    if (p.protocolVersion !== 4) return this.refuse(packets.CONNACK_UNACCEPTABLE_PROTOCOL, 'only MQTT 3.1.1 is supported')
    const clientId = p.clientId ?? ''
    const parts = clientId.split('/')
    const [deviceId, moduleId] = parts
    if (!deviceId) return this.refuse(packets.CONNACK_IDENTIFIER_REJECTED, 'empty client id')
    if (parts.length > 2 || moduleId === '') return this.refuse(packets.CONNACK_IDENTIFIER_REJECTED, 'client id is not {deviceId} or {deviceId}/{moduleId}')
    // username: {host}/{deviceId}[/{moduleId}]/?api-version=... (legacy: {host}/{deviceId}/api-version=...)
    const userParts = (p.username ?? '').split('/')
    if (userParts.length < 3 || userParts[1] !== deviceId || (moduleId !== undefined && (userParts.length < 4 || userParts[2] !== moduleId))) {
      return this.refuse(packets.CONNACK_NOT_AUTHORIZED, moduleId === undefined ? 'username is not {hostName}/{deviceId}/?api-version=...' : 'username is not {hostName}/{deviceId}/{moduleId}/?api-version=...')
    }
    this.modelId = modelIdOf(p.username ?? '')
    let identity: DeviceIdentity | Promise<DeviceIdentity>
    try {
      const password = p.password?.toString('utf8')
      // no password and a client certificate from the TLS handshake: an X.509 device or module
      const certificates = password ? undefined : this.transport.peerCertificates?.()
      identity = this.edge.authenticateConnect({ connId: this.id, deviceId, ...(moduleId !== undefined ? { moduleId } : {}), ...(certificates ? { certificates } : { password }) })
    } catch (e) {
      return this.authenticationFailed(e)
    }
    // on an I/O thread the main thread checks the credentials: what the client sends meanwhile waits (defer)
    if (!(identity instanceof Promise)) return this.authenticated(p, clientId, deviceId, moduleId, identity)
    identity.then((id) => { if (this.state === 'authenticating') this.authenticated(p, clientId, deviceId, moduleId, id) },
      (e: unknown) => { if (this.state === 'authenticating') this.authenticationFailed(e) })
  }

  private authenticationFailed(e: unknown): void {
    if (e instanceof DeviceAuthError) return this.refuse(packets.CONNACK_NOT_AUTHORIZED, e.message, { failure: e.failure })
    this.close('internal error on this connection', { error: e as Error })
  }

  private authenticated(p: mqttPacket.IConnectPacket, clientId: string, deviceId: string, moduleId: string | undefined, identity: DeviceIdentity): void {
    // a module sends on its own topic: devices/{d}/modules/{m}/messages/events/
    const eventsPrefix = moduleId === undefined ? `devices/${deviceId}/messages/events/` : `devices/${deviceId}/modules/${moduleId}/messages/events/`
    if (p.will) {
      if (p.will.qos === 2 || (p.will.topic !== eventsPrefix.slice(0, -1) && !p.will.topic.startsWith(eventsPrefix))) {
        return this.refuse(packets.CONNACK_NOT_AUTHORIZED, 'will topic must be the device\'s events topic')
      }
      this.will = { payload: Buffer.from(p.will.payload ?? ''), bag: bagOf(p.will.topic.slice(eventsPrefix.length)), retain: p.will.retain === true }
    }
    // authenticated: no longer one of its address's unauthenticated connections
    this.admissionTicket?.()
    this.admissionTicket = undefined
    this.identity = identity
    this.clientId = clientId
    this.deviceId = deviceId
    this.eventsPrefix = eventsPrefix
    this.clean = p.clean !== false
    // IoT Hub drops a connection after 1.5 × keep-alive of silence, capped at 1767 s
    this.keepAliveMs = p.keepalive ? Math.min(p.keepalive * 1500, 1_767_000) : 0
    this.armExpiry((identity.expiry + 300) * 1000, identity.authMethod.includes('"x509Certificate"') ? 'client certificate expired' : 'SAS token expired')
    this.edge.openSession(this)
  }

  /** Closes the connection when its credential expires; a timer cannot wait past ~24.8 days, so a long one is re-armed. */
  private armExpiry(atMs: number, reason: string): void {
    this.expiryTimer = setTimeout(() => {
      if (Date.now() >= atMs) this.close(reason)
      else this.armExpiry(atMs, reason)
    }, Math.min(Math.max(0, atMs - Date.now()), 2 ** 31 - 1))
    this.expiryTimer.unref()
  }

  /** The shard answered the session open: the connection is live (or the session could not be stored). */
  sessionOpened(sessionPresent: boolean, filters: string[], errorCode = 0): void {
    if (this.state !== 'authenticating') return
    if (errorCode !== 0) return this.refuse(packets.CONNACK_SERVER_UNAVAILABLE, 'the session could not be stored', { errorCode })
    this.state = 'connected'
    for (const f of filters) this.subscriptions.add(f)
    this.send(packets.connack(packets.CONNACK_ACCEPTED, sessionPresent))
    this.replayWaiting()
  }

  private defer(replay: () => void, bytes: number): void {
    bytes += PACKET_OVERHEAD_BYTES
    this.earlyBytes += bytes
    if (this.earlyBytes > MAX_EARLY_BYTES) {
      return this.close(`more than ${MAX_EARLY_BYTES} bytes ${this.state === 'authenticating' ? 'before CONNACK' : 'while the hub was holding the connection'}`)
    }
    this.early.push({ replay, bytes })
  }

  /** Replays waiting packets, in order, for as long as the hub reads this connection. */
  private replayWaiting(): void {
    while (this.early.length > 0 && this.reading && this.state === 'connected') {
      const next = this.early.shift()!
      this.earlyBytes -= next.bytes
      this.replaying = true
      try {
        next.replay()
      } catch (e) {
        if (e instanceof FrameError) this.close(`malformed packet: ${e.message}`)
        else this.close('internal error on this connection', { error: e as Error })
      } finally {
        this.replaying = false
      }
    }
  }

  /** Whether the hub stopped reading this connection (its silence is then not the client's). */
  get readingPaused(): boolean { return !this.reading }

  private refuse(code: number, reason: string, fields?: Record<string, unknown>): void {
    this.send(packets.connack(code, false))
    this.close(`connection refused: ${reason}`, { connackCode: code, ...fields })
  }

  private onSubscribe(p: mqttPacket.ISubscribePacket): void {
    if (this.state !== 'connected') return this.close('SUBSCRIBE before CONNACK')
    const granted: number[] = []
    const accepted: [string, number][] = []
    for (const s of p.subscriptions) {
      if (this.edge.subscriptionAllowed(this, s.topic)) {
        const qos = Math.min(s.qos, 1)
        granted.push(qos)
        accepted.push([s.topic, qos])
      } else {
        granted.push(0x80)
      }
    }
    for (const [f] of accepted) this.subscriptions.add(f)
    // the SUBACK promises the subscription survives a crash: it leaves once the shard has stored it
    this.pendingAcks.set(p.messageId!, packets.suback(p.messageId!, granted))
    this.edge.subscribe(this, accepted, p.messageId!)
    this.updateReading()
  }

  private onUnsubscribe(p: mqttPacket.IUnsubscribePacket): void {
    if (this.state !== 'connected') return this.close('UNSUBSCRIBE before CONNACK')
    for (const f of p.unsubscriptions) this.subscriptions.delete(f)
    this.pendingAcks.set(p.messageId!, packets.unsuback(p.messageId!))
    this.edge.unsubscribe(this, p.unsubscriptions, p.messageId!)
    this.updateReading()
  }

  /** The shard stored (or failed to store) the subscription change of this packet id. */
  subscriptionStored(packetId: number, errorCode: number): void {
    const ack = this.pendingAcks.get(packetId)
    if (!ack) return
    this.pendingAcks.delete(packetId)
    if (errorCode !== 0) return this.close('the subscription could not be stored', { errorCode })
    this.send(ack)
    this.updateReading()
  }

  /** Shutdown: what arrives from now on is ignored, so it is never acknowledged. */
  stopReading(): void {
    this.draining = true
    this.updateReading()
  }

  /** Ends the connection; a will is sent unless the client said DISCONNECT. */
  close(reason: string, fields?: Record<string, unknown>, graceful = false): void {
    if (this.state === 'closed') return
    const wasConnected = this.state === 'connected'
    this.state = 'closed'
    clearTimeout(this.expiryTimer)
    this.shaping.clear()
    this.releasePreauth()
    this.admissionTicket?.()
    this.admissionTicket = undefined
    this.early = []
    this.pendingAcks.clear()
    if (wasConnected && this.will && !graceful) {
      this.edge.telemetry(this, 0, this.will.bag, this.will.payload, { 'iothub-MessageType': 'Will', ...(this.will.retain ? { 'mqtt-retain': 'true' } : {}) })
    }
    this.transport.end()
    this.edge.closed(this, reason, fields, wasConnected)
  }

  /** The socket went away under us. */
  lost(): void {
    this.close('connection lost')
  }
}
