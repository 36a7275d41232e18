// One device's MQTT 3.1.1 connection, after IoT Hub's rules: CONNECT with a SAS password, telemetry
// on the device's own events topic only, QoS 2 closes the connection, retain is not stored but
// flagged, a will is sent as telemetry on an ungraceful close. `$iothub/...` topics (twins, method
// answers) go to the edge; PUBACKs complete C2D deliveries.
import mqttPacket from 'mqtt-packet'
import { DeviceAuthError, type DeviceIdentity } from '../auth/authenticator.js'
import { FrameError, type FrameHandler } from './framer.js'
import * as packets from './packets.js'
import type { MqttTransport } from './transport.js'
import type { MqttEdge } from './mqtt-edge.js'

/** The largest packet worth reading: a 256 KB message plus a full topic and headers. */
export const MAX_PACKET_BYTES = 256 * 1024 + 65_535 + 16
/** Pause reading past this many messages waiting for their commit. */
const MAX_UNACKED = 2048
/** Packets a client may send after CONNECT before it has its CONNACK. */
const MAX_EARLY_PACKETS = 1000

type State = 'awaiting-connect' | 'authenticating' | 'connected' | 'closed'

export class DeviceConnection implements FrameHandler {
  state: State = 'awaiting-connect'
  identity: DeviceIdentity | undefined
  clientId = ''
  deviceId = ''
  clean = true
  keepAliveMs = 0
  lastPacketAt = Date.now()
  unacked = 0
  /** the shard that owns this device, once the session is opened */
  shard = -1
  /** topic filters of this connection's session (resumed ones included) */
  readonly subscriptions = new Set<string>()
  private paused = false
  private held = false
  /** packets that arrived between CONNECT and CONNACK, replayed once the session is open */
  private early: (() => void)[] = []
  readonly acceptedAt = Date.now()
  private draining = false
  private sawFirstByte = false
  private eventsPrefix = ''
  private will: { payload: Buffer; bag: string; retain: boolean } | undefined
  private readonly framer: ReturnType<MqttEdge['createFramer']>
  private expiryTimer: NodeJS.Timeout | undefined

  constructor(readonly id: number, readonly transport: MqttTransport, private readonly edge: MqttEdge) {
    this.framer = edge.createFramer(MAX_PACKET_BYTES)
  }

  /** Bytes from the transport. Malformed input closes this connection only. */
  receive(chunk: Buffer): void {
    if (this.state === 'closed' || this.draining) return
    this.lastPacketAt = Date.now()
    // the first packet must be CONNECT: anything else (an HTTP request, a probe) is dropped at once
    // rather than waiting for a length that may never come
    if (this.state === 'awaiting-connect' && !this.sawFirstByte && chunk.length > 0) {
      this.sawFirstByte = true
      if (chunk[0] !== 0x10) return this.close('first packet is not CONNECT')
    }
    try {
      this.framer.push(chunk, this)
    } catch (e) {
      // whatever a client sends, it costs at most its own connection, never the hub
      if (e instanceof FrameError) this.close(`malformed packet: ${e.message}`)
      else this.close('internal error on this connection', { error: e as Error })
    }
  }

  publish(topic: string, payload: Buffer, qos: number, packetId: number, retain: boolean): void {
    if (this.state === 'authenticating') {
      // MQTT lets a client send right after CONNECT; keep it until the session is open (the copy
      // because a framer may reuse the bytes of a packet that spanned reads)
      const copy = Buffer.from(payload)
      return this.defer(() => this.publish(topic, copy, qos, packetId, retain))
    }
    if (this.state !== 'connected') return this.close('PUBLISH before CONNACK')
    if (qos === 2) return this.close('QoS 2 is not supported by IoT Hub')
    if (topic.startsWith('$iothub/')) {
      if (qos === 1) this.transport.write(packets.pubacks([packetId]))
      return this.edge.iothubPublish(this, topic, payload)
    }
    if (!topic.startsWith(this.eventsPrefix) && topic !== this.eventsPrefix.slice(0, -1)) {
      return this.close(topic.startsWith('devices/') && !topic.startsWith(`devices/${this.deviceId}/`)
        ? 'publish to another device\'s topic' : `publish to an unsupported topic`, { topic })
    }
    this.sendTelemetry(topic.slice(this.eventsPrefix.length), payload, qos === 1 ? packetId : 0, retain ? { 'mqtt-retain': 'true' } : null)
  }

  private sendTelemetry(bag: string, payload: Buffer, packetId: number, extra: Record<string, string> | null): void {
    if (packetId !== 0 && ++this.unacked > MAX_UNACKED && !this.paused) {
      this.paused = true
      this.transport.pause()
    }
    this.edge.telemetry(this, packetId, bag, payload, extra)
  }

  /** Called by the edge when the shard committed messages of this connection. */
  acked(count: number): void {
    this.unacked -= count
    if (this.paused && this.unacked <= MAX_UNACKED / 2) {
      this.paused = false
      if (!this.held) this.transport.resume()
    }
  }

  /** The edge's hub-wide backpressure: hold reading while the shards catch up. */
  hold(on: boolean): void {
    if (this.held === on || this.draining) return
    this.held = on
    if (on) this.transport.pause()
    else if (!this.paused) this.transport.resume()
  }

  other(type: number, packet: Buffer): void {
    // control packets are rare: a fresh parser each time keeps a bad packet from poisoning the next
    let decoded: mqttPacket.Packet | undefined
    let error: Error | undefined
    const parser = mqttPacket.parser({ protocolVersion: 4 })
    parser.on('packet', (p: mqttPacket.Packet) => { decoded ??= p })
    parser.on('error', (e: Error) => { error ??= e })
    parser.parse(packet)
    if (error || !decoded) throw new FrameError(error?.message ?? `undecodable packet of type ${type}`)
    if (this.state === 'authenticating' && decoded.cmd !== 'connect') {
      const copy = Buffer.from(packet)
      return this.defer(() => this.other(type, copy))
    }
    switch (decoded.cmd) {
      case 'connect': return this.onConnect(decoded)
      case 'subscribe': return this.onSubscribe(decoded)
      case 'unsubscribe': return this.onUnsubscribe(decoded)
      case 'pingreq': if (this.state === 'connected') this.transport.write(packets.PINGRESP); return
      case 'disconnect':
        this.will = undefined
        return this.close('client disconnected', undefined, true)
      case 'puback':
        // completes a C2D message (the only QoS 1 PUBLISH the hub sends)
        if (this.state === 'connected') this.edge.deviceAcked(this, decoded.messageId!)
        return
      default:
        return this.close(`unexpected ${decoded.cmd} packet`)
    }
  }

  private onConnect(p: mqttPacket.IConnectPacket): void {
    if (this.state !== 'awaiting-connect') return this.close('second CONNECT on one connection')
    this.state = 'authenticating'
    if (p.protocolVersion !== 4) return this.refuse(packets.CONNACK_UNACCEPTABLE_PROTOCOL, 'only MQTT 3.1.1 is supported')
    const clientId = p.clientId ?? ''
    const [deviceId, moduleId] = clientId.split('/')
    if (!deviceId) return this.refuse(packets.CONNACK_IDENTIFIER_REJECTED, 'empty client id')
    if (moduleId !== undefined) return this.refuse(packets.CONNACK_IDENTIFIER_REJECTED, 'module identities are not supported yet')
    // username: {host}/{deviceId}/?api-version=... (legacy: {host}/{deviceId}/api-version=...)
    const userParts = (p.username ?? '').split('/')
    if (userParts.length < 3 || userParts[1] !== deviceId) return this.refuse(packets.CONNACK_NOT_AUTHORIZED, 'username is not {hostName}/{deviceId}/?api-version=...')
    let identity: DeviceIdentity
    try {
      identity = this.edge.authenticator.authenticateDevice(p.password?.toString('utf8'), deviceId)
    } catch (e) {
      if (e instanceof DeviceAuthError) return this.refuse(packets.CONNACK_NOT_AUTHORIZED, e.message, { failure: e.failure })
      throw e
    }
    const eventsPrefix = `devices/${deviceId}/messages/events/`
    if (p.will) {
      if (p.will.qos === 2 || (p.will.topic !== eventsPrefix.slice(0, -1) && !p.will.topic.startsWith(eventsPrefix))) {
        return this.refuse(packets.CONNACK_NOT_AUTHORIZED, 'will topic must be the device\'s events topic')
      }
      this.will = { payload: Buffer.from(p.will.payload ?? ''), bag: p.will.topic.slice(eventsPrefix.length), retain: p.will.retain === true }
    }
    this.identity = identity
    this.clientId = clientId
    this.deviceId = deviceId
    this.eventsPrefix = eventsPrefix
    this.clean = p.clean !== false
    // IoT Hub drops a connection after 1.5 × keep-alive of silence, capped at 1767 s
    this.keepAliveMs = p.keepalive ? Math.min(p.keepalive * 1500, 1_767_000) : 0
    const msToExpiry = (identity.expiry + 300) * 1000 - Date.now()
    this.expiryTimer = setTimeout(() => this.close('SAS token expired'), Math.min(msToExpiry, 2 ** 31 - 1))
    this.expiryTimer.unref()
    this.edge.openSession(this)
  }

  /** The shard answered the session open: the connection is live. */
  sessionOpened(sessionPresent: boolean, filters: string[]): void {
    if (this.state !== 'authenticating') return
    this.state = 'connected'
    for (const f of filters) this.subscriptions.add(f)
    this.transport.write(packets.connack(packets.CONNACK_ACCEPTED, sessionPresent))
    const early = this.early
    this.early = []
    for (const replay of early) if (this.state === 'connected') replay()
  }

  private defer(replay: () => void): void {
    if (this.early.length >= MAX_EARLY_PACKETS) return this.close(`more than ${MAX_EARLY_PACKETS} packets before CONNACK`)
    this.early.push(replay)
  }

  /** Whether the hub stopped reading this connection (its silence is then not the client's). */
  get readingPaused(): boolean { return this.paused || this.held || this.draining }

  private refuse(code: number, reason: string, fields?: Record<string, unknown>): void {
    this.transport.write(packets.connack(code, false))
    this.close(`connection refused: ${reason}`, { connackCode: code, ...fields })
  }

  private onSubscribe(p: mqttPacket.ISubscribePacket): void {
    if (this.state !== 'connected') return this.close('SUBSCRIBE before CONNACK')
    const granted: number[] = []
    const accepted: [string, number][] = []
    for (const s of p.subscriptions) {
      if (this.edge.subscriptionAllowed(this.deviceId, s.topic)) {
        const qos = Math.min(s.qos, 1)
        granted.push(qos)
        accepted.push([s.topic, qos])
      } else {
        granted.push(0x80)
      }
    }
    for (const [f] of accepted) this.subscriptions.add(f)
    if (accepted.length > 0) this.edge.subscribe(this, accepted)
    this.transport.write(packets.suback(p.messageId!, granted))
  }

  private onUnsubscribe(p: mqttPacket.IUnsubscribePacket): void {
    if (this.state !== 'connected') return this.close('UNSUBSCRIBE before CONNACK')
    for (const f of p.unsubscriptions) this.subscriptions.delete(f)
    this.edge.unsubscribe(this, p.unsubscriptions)
    this.transport.write(packets.unsuback(p.messageId!))
  }

  /** Shutdown: what arrives from now on is ignored, so it is never acknowledged. */
  stopReading(): void {
    this.transport.pause()
    this.paused = true
    this.draining = true
  }

  /** Ends the connection; a will is sent unless the client said DISCONNECT. */
  close(reason: string, fields?: Record<string, unknown>, graceful = false): void {
    if (this.state === 'closed') return
    const wasConnected = this.state === 'connected'
    this.state = 'closed'
    clearTimeout(this.expiryTimer)
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
