// The edge's view of every device connection, MQTT or AMQP: it hands telemetry to the owning shard,
// passes back the acknowledgements the shards release (all acks of one connection at once), enforces
// one connection per client id, and answers the registry's presence questions. It also carries
// twins, direct methods and C2D between devices and their shards (twinRequest, publishFromShard).
// Each connection translates for its protocol (edge-connection.ts); MQTT's listeners come in here
// through accept().
import type { X509Certificate } from 'node:crypto'
import type { Authenticator, DeviceIdentity } from '../auth/authenticator.js'
import type { Logger } from '../log.js'
import { NEVER, type PresenceView, type RegistryEvent } from '../registry/device-registry.js'
import type { ShardPool } from '../shard-pool.js'
import {
  CONN_ID_STRIDE,
  OP_CONNECTION_CLOSED, OP_PUBACK, OP_SESSION_END, OP_SESSION_OPEN, OP_SUBSCRIBE, OP_TELEMETRY, OP_TWIN_DEVICE, OP_UNSUBSCRIBE,
  moduleKey,
} from '../shard-protocol.js'
import { DeviceConnection, WRITE_DRAIN_TIMEOUT_MS } from '../mqtt/device-connection.js'
import type { C2dOutcome, EdgeConnection } from './edge-connection.js'
import { Admission, MAX_PENDING_PER_ADDRESS } from '../mqtt/admission.js'
import { LogRateLimit } from '../log-rate-limit.js'
import { MqttFramer } from '../mqtt/framer.js'
import { WasmMqttFramer } from '../wasm/wasm-framer.js'
import { METHODS_FILTER, parseIotHubTopic } from '../mqtt/iothub-topics.js'
import { MethodCalls } from '../mqtt/method-calls.js'
import type { MqttTransport } from '../mqtt/transport.js'
import type { HubThrottles } from '../throttle/hub-throttles.js'
import { EdgeStats } from './edge-stats.js'
import { deviceErrorBody, HubError } from '../rest/hub-error.js'
import { protocolOf, type Fault, type FaultInjector } from '../throttle/faults.js'
import { meteredSize } from '../throttle/metered-size.js'

/** Whom a connection speaks for: its device, or `{device}/{module}` for a module (presence, methods and the shard's state are kept under it). */
export function identityKeyOf(conn: EdgeConnection): string {
  const m = conn.identity?.module
  return m ? moduleKey(conn.deviceId, m.moduleId) : conn.deviceId
}

/** Where the last activity of disconnected devices is kept across restarts. */
export interface ActivityLog {
  load(): Iterable<[string, number]>
  record(deviceId: string, at: number): void
  forget(deviceId: string): void
}

/**
 * Telemetry sent to shards and not yet finished, in messages and in bytes: every connection stops
 * reading above either HIGH mark and resumes once both are at their LOW mark. Each connection has
 * its own, smaller window too (device-connection.ts), so one device rarely holds the others. The
 * byte mark is low because what it counts is held several times over (the read, the copy to the
 * shard, the commit's batch): at 128 MB a review measured 1.3 GB resident, and a small device's
 * commit waited behind all of it.
 */
export const TELEMETRY_HIGH_WATER = 20_000
const TELEMETRY_LOW_WATER = 10_000
export const TELEMETRY_HIGH_WATER_BYTES = 32 * 1024 * 1024
const TELEMETRY_LOW_WATER_BYTES = 16 * 1024 * 1024

/** A client that has not sent CONNECT by then is dropped. */
const CONNECT_TIMEOUT_MS = 30_000
/** What all unauthenticated connections together may hold of CONNECT packets larger than the free size. */
export const PREAUTH_BUDGET_BYTES = 64 * 1024 * 1024

/** What a CONNECT presents: a SAS token, or a client certificate chain from the TLS handshake. */
export interface ConnectCredentials { connId: number; deviceId: string; moduleId?: string; password?: string; certificates?: X509Certificate[] }

/** Where an edge runs: thread 0 is the main thread; an I/O thread's edge has its share of the hub-wide bounds. */
export interface EdgePlacement { thread: number; threads: number }

/** The shards as the edge uses them: one send per op (batched per turn), and who owns a device. */
export type ShardSender = Pick<ShardPool, 'send' | 'shardFor'>

export class DeviceEdge implements PresenceView {
  private nextConnId: number
  protected readonly byId = new Map<number, EdgeConnection>()
  private telemetryInFlight = 0
  private telemetryBytesInFlight = 0
  private holding = false
  private readonly byClientId = new Map<string, EdgeConnection>()
  /** the live connection of each device or module (identityKeyOf), for methods and presence */
  private readonly byIdentity = new Map<string, EdgeConnection>()
  private readonly connectedAt = new Map<string, string>()
  private readonly stateChangedAt = new Map<string, string>()
  private readonly lastActivity = new Map<string, number>()
  private readonly c2dCounts = new Map<string, number>()
  private readonly sweepTimer: NodeJS.Timeout
  private preauthBytes = 0
  readonly methods: MethodCalls
  readonly admission: Admission
  /** a device connected announcing another IoT Plug and Play model than its identity holds */
  onModelAnnounced: (deviceId: string, modelId: string) => void = () => {}
  /** at most 20 warnings about refused connections every 10 s; the rest are counted */
  private readonly refusedLog = new LogRateLimit(20, 10_000, (count) => this.log.warn('refused connections not logged', { count, windowSeconds: 10 }))

  private readonly highWater: number
  private readonly lowWater: number
  private readonly highWaterBytes: number
  private readonly lowWaterBytes: number
  private readonly preauthBudget: number

  constructor(readonly authenticator: Authenticator, protected readonly shards: ShardSender, protected readonly log: Logger,
    private readonly framer: 'wasm' | 'js' = 'wasm', private readonly activity?: ActivityLog, placement: EdgePlacement = { thread: 0, threads: 1 }) {
    this.nextConnId = CONN_ID_STRIDE + placement.thread
    // I/O threads split the hub-wide bounds between them
    const share = 1 / placement.threads
    this.highWater = Math.ceil(TELEMETRY_HIGH_WATER * share)
    this.lowWater = Math.ceil(TELEMETRY_LOW_WATER * share)
    this.highWaterBytes = Math.ceil(TELEMETRY_HIGH_WATER_BYTES * share)
    this.lowWaterBytes = Math.ceil(TELEMETRY_LOW_WATER_BYTES * share)
    this.preauthBudget = Math.ceil(PREAUTH_BUDGET_BYTES * share)
    // one address's unauthenticated connections over all threads: no more than one edge would admit
    this.admission = new Admission(Math.ceil(MAX_PENDING_PER_ADDRESS * share))
    for (const [deviceId, at] of activity?.load() ?? []) this.lastActivity.set(deviceId, at)
    this.sweepTimer = setInterval(() => this.sweep(), 1000)
    this.sweepTimer.unref()
    this.methods = new MethodCalls((deviceId) => {
      // a device's connection is under its id, a module's under `{device}/{module}` (its MQTT client id)
      const conn = this.byIdentity.get(deviceId)
      if (conn?.state !== 'connected' || !conn.subscriptions.has(METHODS_FILTER)) return undefined
      return { id: conn.id, deviceId, request: (name, rid, payload) => conn.methodRequest(name, rid, payload) }
    })
  }

  get connectionCount(): number { return this.byId.size }

  /** A drop-connections fault: the connections it covers close now (new ones are refused while it lasts). */
  dropConnections(fault: Fault): number {
    let n = 0
    for (const c of [...this.byId.values()]) {
      if (fault.protocol !== undefined && fault.protocol !== protocolOf(c.transportKind)) continue
      if (fault.deviceId !== undefined && fault.deviceId !== c.deviceId) continue
      c.close('dropped (a fault injected through /hyperhub/faults)')
      n++
    }
    return n
  }

  /** Open connections per transport and whether they are connected (for /metrics; a scrape walks them once). */
  connectionsByTransport(): Map<string, { connected: number; opening: number }> {
    const out = new Map<string, { connected: number; opening: number }>()
    for (const c of this.byId.values()) {
      let e = out.get(c.transportKind)
      if (!e) out.set(c.transportKind, (e = { connected: 0, opening: 0 }))
      if (c.state === 'connected') e.connected++
      else e.opening++
    }
    return out
  }

  /** Telemetry the shards have not finished with: messages and bytes (for /metrics), I/O threads' included. */
  get telemetryQueue(): { messages: number; bytes: number } {
    const elsewhere = this.elsewhereQueue()
    return { messages: this.telemetryInFlight + elsewhere.messages, bytes: this.telemetryBytesInFlight + elsewhere.bytes }
  }

  /** What the I/O threads last reported of their telemetry in flight. */
  elsewhereQueue: () => { messages: number; bytes: number } = () => ({ messages: 0, bytes: 0 })

  /** The connection with this id, if this edge knows it. */
  connectionOf(id: number): EdgeConnection | undefined {
    return this.byId.get(id)
  }

  get connectedDeviceCount(): number { return this.connectedAt.size }

  /** The WASM framer by default; the JS one on `--mqtt-framer js` (same interface, same errors). */
  createFramer(maxPacketBytes: number): MqttFramer | WasmMqttFramer {
    return this.framer === 'wasm' ? new WasmMqttFramer(maxPacketBytes) : new MqttFramer(maxPacketBytes)
  }

  /** A new connection, or undefined when its address already has too many unauthenticated ones. */
  accept(transport: MqttTransport): DeviceConnection | undefined {
    // TLS and TCP sockets were admitted as they were accepted; a WebSocket is admitted here
    const ticket = transport.kind === 'wss' ? this.admission.enter(transport.remoteAddress) : this.admission.ticketOf(transport.remoteAddress, transport.remotePort)
    if (!ticket && transport.kind === 'wss') return undefined
    const conn = new DeviceConnection(this.newConnectionId(), transport, this, ticket)
    this.register(conn)
    return conn
  }

  /** A connection id for a connection made elsewhere (an AMQP device session). */
  newConnectionId(): number {
    const id = this.nextConnId
    this.nextConnId += CONN_ID_STRIDE
    return id
  }

  /** A CONNECT's credentials checked against the registry (an I/O thread's edge asks the main thread). */
  authenticateConnect(c: ConnectCredentials): DeviceIdentity | Promise<DeviceIdentity> {
    if (c.certificates) return this.authenticator.authenticateX509(c.certificates, c.deviceId, c.moduleId)
    return c.moduleId === undefined ? this.authenticator.authenticateDevice(c.password, c.deviceId) : this.authenticator.authenticateModule(c.password, c.deviceId, c.moduleId)
  }

  /** The edge knows of the connection from now on (it is authenticating or about to). */
  register(conn: EdgeConnection): void {
    this.byId.set(conn.id, conn)
    if (this.holding) conn.hold(true)
  }

  /** A CONNECT larger than the free size takes its bytes from the hub-wide budget, or is refused. */
  reservePreauth(bytes: number): boolean {
    if (this.preauthBytes + bytes > this.preauthBudget) return false
    this.preauthBytes += bytes
    return true
  }

  releasePreauth(bytes: number): void {
    this.preauthBytes -= bytes
  }

  /** The tier's throttles and daily meter (the hub sets them; without them nothing is throttled or metered). */
  throttles: HubThrottles | undefined = undefined
  /** counts for /metrics (the hub gives it the latency histogram) */
  stats = new EdgeStats()
  /** connections the connection throttle queued, before their session opens */
  protected readonly waitingToOpen = new Set<EdgeConnection>()
  /** acknowledgements a delay-acks fault holds, per connection, in the order they are due */
  protected readonly heldAcks = new Map<number, { at: number; ids: number[] }[]>()

  /** The shard knows the connection's device from the session open, so only the message crosses. */
  telemetry(conn: EdgeConnection, packetId: number, bag: string, payload: Buffer, extra: Record<string, string> | null): void {
    if (this.throttles && !this.admitTelemetry(conn, packetId, bag, payload, extra?.['iothub-MessageType'] === 'Will')) return
    this.stats.telemetry(conn, packetId)
    this.shards.send(conn.shard, [OP_TELEMETRY, conn.id, packetId, bag, payload, extra])
    // QoS 0 has no acknowledgement to wait for: without a bound, a fast publisher fills memory
    // faster than the shards commit. Past the mark every connection stops reading until they catch up.
    const bytes = payload.length + bag.length
    conn.telemetrySent(bytes)
    this.telemetryBytesInFlight += bytes
    if ((++this.telemetryInFlight > this.highWater || this.telemetryBytesInFlight > this.highWaterBytes) && !this.holding) this.hold(true)
  }

  /**
   * D2C under the tier, on this thread with no step across: the daily quota, then the D2C throttle
   * (queued: the connection stops reading for its wait, so the accepted rate falls to the limit;
   * refused: MQTT closes, AMQP rejects the message). Metered by payload size, on 4 KB chunks.
   */
  private admitTelemetry(conn: EdgeConnection, packetId: number, bag: string, payload: Buffer, isWill: boolean): boolean {
    const t = this.throttles!
    // a will is sent for a connection that is gone: billed, never refused or queued
    if (isWill) {
      t.meter.bill('d2c', t.meter.chunks(meteredSize(bag, payload, t.meter.chunkBytes)))
      return true
    }
    if (t.faults.active) {
      const protocol = protocolOf(conn.transportKind)
      if (t.faults.find('throttle', protocol, conn.deviceId)) { conn.throttled(429001, 'throttled (a fault injected through /hyperhub/faults)', packetId); return false }
      if (t.faults.find('server-busy', protocol, conn.deviceId)) { conn.throttled(503005, 'the hub is busy (a fault injected through /hyperhub/faults)', packetId); return false }
    }
    if (t.meter.exhausted) {
      t.meter.bill('d2c', 1) // counted as refused
      conn.throttled(403002, `the daily message quota of ${t.limits.messagesPerDay} is used up; it resets at midnight UTC`, packetId)
      return false
    }
    const a = t.admit('d2c')
    if (a.kind === 'refused') {
      conn.throttled(429001, `more than ${t.limits.throttles.d2c} device-to-cloud messages/s on tier ${t.limits.tier}`, packetId)
      return false
    }
    if (a.kind === 'queued') conn.pauseReadingFor(a.waitMs)
    t.meter.bill('d2c', t.meter.chunks(meteredSize(bag, payload, t.meter.chunkBytes)))
    return true
  }

  /** The shards finished with telemetry: flat [connId, count, bytes, ...] from `from`. */
  telemetryDone(flat: number[], from = 0): void {
    for (let i = from; i + 2 < flat.length; i += 3) {
      this.telemetryInFlight -= flat[i + 1]!
      this.telemetryBytesInFlight -= flat[i + 2]!
      this.byId.get(flat[i]!)?.telemetryFinished(flat[i + 2]!)
    }
    if (this.holding && this.telemetryInFlight <= this.lowWater && this.telemetryBytesInFlight <= this.lowWaterBytes) this.hold(false)
  }

  private hold(on: boolean): void {
    this.holding = on
    for (const conn of this.byId.values()) conn.hold(on)
  }

  openSession(conn: EdgeConnection): void {
    if (this.throttles?.faults.find('drop-connections', protocolOf(conn.transportKind), conn.deviceId)) {
      return conn.throttled(503005, 'the hub refuses connections for now (a fault injected through /hyperhub/faults)')
    }
    const a = this.throttles?.admit('connections')
    if (a?.kind === 'refused') return conn.throttled(429001, `more than ${this.throttles!.limits.throttles.connections} new device connections/s on tier ${this.throttles!.limits.tier}`)
    if (a?.kind === 'queued') {
      // waiting for its turn, it is in no table a registry change looks at: it waits here
      this.waitingToOpen.add(conn)
      setTimeout(() => {
        if (!this.waitingToOpen.delete(conn)) return
        if (conn.state === 'authenticating') this.openSessionNow(conn)
      }, a.waitMs)
      return
    }
    this.openSessionNow(conn)
  }

  private openSessionNow(conn: EdgeConnection): void {
    // one connection per identity: the newest wins (Azure: 400027 ConnectionForcefullyClosedOnNewConnection)
    this.byClientId.get(conn.clientId)?.close('taken over by a new connection for the same client id')
    this.byClientId.set(conn.clientId, conn)
    this.byIdentity.set(identityKeyOf(conn), conn)
    const d = conn.identity!.device
    const m = conn.identity!.module
    conn.shard = this.shards.shardFor(conn.deviceId)
    this.shards.send(conn.shard, [OP_SESSION_OPEN, conn.id, conn.clientId, conn.clean, d.deviceId, m?.generationId ?? d.generationId, conn.identity!.authMethod, conn.modelId, m?.moduleId ?? ''])
  }

  sessionOpened(connId: number, sessionPresent: boolean, filters: string[] = [], errorCode = 0): void {
    const conn = this.byId.get(connId)
    if (!conn) return
    conn.sessionOpened(sessionPresent, filters, errorCode)
    if (errorCode !== 0) return
    const module = conn.identity!.module
    if (!module && (conn.identity!.device.modelId ?? '') !== conn.modelId) this.onModelAnnounced(conn.deviceId, conn.modelId)
    const now = new Date().toISOString()
    const key = identityKeyOf(conn)
    this.connectedAt.set(key, now)
    this.stateChangedAt.set(key, now)
    this.log.info('device connected', {
      deviceId: conn.deviceId, ...(module ? { moduleId: module.moduleId } : {}), transport: conn.transportKind, sessionPresent,
      ...(conn.ioThread !== undefined ? { ioThread: conn.ioThread } : {}),
    })
  }

  acks(flat: number[], from: number): void {
    // group by connection so each gets one write however many acks it earned
    const byConn = new Map<EdgeConnection, number[]>()
    for (let i = from; i < flat.length; i += 2) {
      const conn = this.byId.get(flat[i]!)
      if (!conn) continue
      this.stats.acked(flat[i]!, flat[i + 1]!)
      let ids = byConn.get(conn)
      if (!ids) byConn.set(conn, (ids = []))
      ids.push(flat[i + 1]!)
    }
    const faults = this.ackFaults()
    for (const [conn, ids] of byConn) {
      const delay = faults?.active ? faults.find('delay-acks', protocolOf(conn.transportKind), conn.deviceId) : undefined
      const held = this.heldAcks.get(conn.id)
      if (!delay && !held) { conn.acked(ids); continue }
      // acknowledgements leave in order (MQTT requires it): none overtakes one a fault still holds
      const now = performance.now()
      const queue = held ?? []
      const at = Math.max(delay ? now + delay.delayMs! : 0, queue.at(-1)?.at ?? 0)
      queue.push({ at, ids })
      if (!held) {
        this.heldAcks.set(conn.id, queue)
        this.releaseHeldAcks(conn)
      }
    }
  }

  /** The faults that may delay acknowledgements (an I/O thread's edge has the main thread's copy). */
  protected ackFaults(): Pick<FaultInjector, 'active' | 'find'> | undefined {
    return this.throttles?.faults
  }

  /** An I/O thread's message the main thread admits under the tier and faults (false: refused; the connection was told). */
  admitForwarded(conn: EdgeConnection, packetId: number, bag: string, payload: Buffer, extra: Record<string, string> | null): boolean {
    return !this.throttles || this.admitTelemetry(conn, packetId, bag, payload, extra?.['iothub-MessageType'] === 'Will')
  }

  /** Releases a connection's held acknowledgements that are due, in order; one timer for the next. */
  private releaseHeldAcks(conn: EdgeConnection): void {
    const queue = this.heldAcks.get(conn.id)
    if (!queue) return
    const now = performance.now()
    while (queue.length > 0 && queue[0]!.at <= now) conn.acked(queue.shift()!.ids)
    if (queue.length === 0) { this.heldAcks.delete(conn.id); return }
    setTimeout(() => this.releaseHeldAcks(conn), queue[0]!.at - now)
  }

  rejected(connId: number, code: number, message: string, packetId: number): void {
    this.byId.get(connId)?.refused(packetId, code, message)
  }

  /** A shard's PUBLISH to one of its devices (C2D, twin responses, desired-property patches). */
  publishFromShard(connId: number, topic: string, payload: Uint8Array, qos: number, packetId: number, dup: boolean): void {
    const conn = this.byId.get(connId)
    if (conn?.state !== 'connected') return // the shard learns of the close through OP_CONNECTION_CLOSED and unlocks
    this.stats.delivered(conn.transportKind)
    if (this.throttles) this.meterDelivery(topic, payload, dup)
    conn.deliver(topic, payload, qos, packetId, dup)
  }

  /** What Azure bills of what reaches a device: a C2D message once (not its redeliveries), a twin it read, a desired patch delivered. */
  private meterDelivery(topic: string, payload: Uint8Array, dup: boolean): void {
    const meter = this.throttles!.meter
    if (topic.startsWith('$iothub/twin/res/200/')) meter.bill('twinReads', meter.chunks(payload.length))
    else if (topic.startsWith('$iothub/twin/PATCH/properties/desired/')) meter.bill('twinUpdates', meter.chunks(payload.length))
    else if (!dup && topic.includes('/messages/devicebound')) meter.bill('c2d', meter.chunks(payload.length))
  }

  /** A device's PUBLISH on `$iothub/...`: twin requests go to its shard, method answers to the caller. */
  iothubPublish(conn: DeviceConnection, topic: string, payload: Buffer): void {
    const req = parseIotHubTopic(topic)
    if (!req) return conn.close('publish to an unsupported topic', { topic })
    if (req.kind === 'method-response') return this.methodResponse(conn, req.rid, req.status, payload)
    conn.twinRequested()
    this.twinRequest(conn, req.kind === 'twin-get' ? 'get' : 'patch', req.rid, payload)
  }

  /** A device's answer to a direct method call. */
  methodResponse(conn: EdgeConnection, rid: string, status: number, payload: Buffer): void {
    this.methodResponseOf(identityKeyOf(conn), conn.deviceId, rid, status, payload)
  }

  /** The answer of the device or module `key` (an I/O thread's connections' answers come here directly). */
  methodResponseOf(key: string, deviceId: string, rid: string, status: number, payload: Buffer): void {
    if (!this.methods.response(key, rid, status, payload)) {
      this.log.warn('direct method response refused', { deviceId, bytes: payload.length })
    }
  }

  /** A device's twin GET or reported-properties PATCH: its shard answers with a twin response topic carrying `rid`. */
  twinRequest(conn: EdgeConnection, kind: 'get' | 'patch', rid: string, payload: Buffer): void {
    const t = this.throttles
    if (t) {
      // the tier applies as to the service's twin calls: Basic lacks twins, the quota, the twin throttles
      const refuse = (status: number, code: number, message: string) =>
        conn.deliver(`$iothub/twin/res/${status}/?$rid=${rid}`, Buffer.from(deviceErrorBody(new HubError(code, message))), 0, 0, false)
      if (t.limits.basic) return refuse(403, 403010, `device twins are not available on tier ${t.limits.tier}`)
      if (t.meter.exhausted) {
        t.meter.bill(kind === 'get' ? 'twinReads' : 'twinUpdates', 1) // counted as refused
        return refuse(403, 403002, 'the daily message quota is used up; it resets at midnight UTC')
      }
      const a = t.admit(kind === 'get' ? 'twinReads' : 'twinUpdates')
      if (a.kind === 'refused') return refuse(429, 429002, `the twin ${kind === 'get' ? 'read' : 'update'} throttle's backlog is full on tier ${t.limits.tier}`)
      // a device's reported patch is billed by its size (its GET by the twin it gets back)
      if (kind === 'patch') t.meter.bill('twinUpdates', t.meter.chunks(payload.length))
      if (a.kind === 'queued') {
        setTimeout(() => { if (conn.state === 'connected') this.shards.send(conn.shard, [OP_TWIN_DEVICE, conn.id, kind, rid, payload]) }, a.waitMs)
        return
      }
    }
    this.shards.send(conn.shard, [OP_TWIN_DEVICE, conn.id, kind, rid, payload])
  }

  /** The device settled a C2D message the shard sent it (MQTT's PUBACK completes it). */
  c2dSettled(conn: EdgeConnection, packetId: number, outcome: C2dOutcome = 'complete'): void {
    this.shards.send(conn.shard, outcome === 'complete' ? [OP_PUBACK, conn.id, packetId] : [OP_PUBACK, conn.id, packetId, outcome])
  }

  /** Shards report each change of a device's queue depth (cloudToDeviceMessageCount). */
  c2dCount(deviceId: string, count: number): void {
    if (count === 0) this.c2dCounts.delete(deviceId)
    else this.c2dCounts.set(deviceId, count)
  }

  /** The topic filters IoT Hub documents: a device's C2D, a module's inputs (IoT Edge routes to them), twins and methods for both. */
  subscriptionAllowed(conn: EdgeConnection, filter: string): boolean {
    const m = conn.identity?.module
    const own = m ? filter === `devices/${conn.deviceId}/modules/${m.moduleId}/inputs/#` : filter === `devices/${conn.deviceId}/messages/devicebound/#`
    return own || filter === '$iothub/twin/res/#' || filter === '$iothub/twin/PATCH/properties/desired/#' || filter === '$iothub/methods/POST/#'
  }

  /** The shard stores the change and answers OP_SUBSCRIBED; only then does the SUBACK leave. */
  subscribe(conn: EdgeConnection, filters: [string, number][], packetId: number): void {
    this.log.debug('subscribed', { deviceId: conn.deviceId, filters: filters.map((f) => f[0]) })
    this.shards.send(conn.shard, [OP_SUBSCRIBE, conn.id, conn.clientId, filters, packetId])
  }

  unsubscribe(conn: EdgeConnection, filters: string[], packetId: number): void {
    this.shards.send(conn.shard, [OP_UNSUBSCRIBE, conn.id, conn.clientId, filters, packetId])
  }

  subscriptionStored(connId: number, packetId: number, errorCode: number): void {
    this.byId.get(connId)?.subscriptionStored(packetId, errorCode)
  }

  closed(conn: EdgeConnection, reason: string, fields: Record<string, unknown> | undefined, wasConnected: boolean): void {
    this.byId.delete(conn.id)
    this.stats.forget(conn.id)
    this.heldAcks.delete(conn.id)
    this.waitingToOpen.delete(conn)
    // a connection on an I/O thread tells its shard itself, in order after its last message and will
    const here = conn.ioThread === undefined
    if (conn.shard >= 0 && here) this.shards.send(conn.shard, [OP_CONNECTION_CLOSED, conn.id])
    const key = conn.deviceId ? identityKeyOf(conn) : ''
    if (key && this.byIdentity.get(key) === conn) this.byIdentity.delete(key)
    if (conn.clientId && this.byClientId.get(conn.clientId) === conn) {
      this.byClientId.delete(conn.clientId)
      if (conn.clean && here) this.shards.send(conn.shard, [OP_SESSION_END, conn.clientId, conn.id])
      if (wasConnected) {
        this.connectedAt.delete(key)
        this.stateChangedAt.set(key, new Date().toISOString())
      }
    }
    if (key) {
      this.lastActivity.set(key, conn.lastPacketAt)
      this.activity?.record(key, conn.lastPacketAt)
    }
    this.logClosed(conn.deviceId, conn.transportKind, reason, fields, wasConnected)
  }

  /** A closed connection's log line (an I/O thread's connections closed before they authenticated come here directly). */
  logClosed(deviceId: string, transport: string, reason: string, fields: Record<string, unknown> | undefined, wasConnected: boolean): void {
    const level = wasConnected || reason === 'connection lost' ? 'info' : 'warn'
    // refused connections come in floods: their warnings are bounded
    if (level === 'warn' && !this.refusedLog.allow()) return
    this.log[level]('connection closed', { deviceId: deviceId || undefined, transport, reason, ...fields })
  }

  /** A device's HTTPS channel (http-device.ts) was let go: the shard unbinds it; it was never a connection. */
  closedChannel(conn: EdgeConnection): void {
    this.byId.delete(conn.id)
    this.stats.forget(conn.id)
    this.shards.send(conn.shard, [OP_CONNECTION_CLOSED, conn.id])
  }

  /** Disabled or deleted devices lose their connection at once. */
  registryChanged(e: RegistryEvent): void {
    if (e.kind === 'deleted' || e.device.status === 'disabled') {
      const reason = e.kind === 'deleted' ? 'device deleted' : 'device disabled'
      // the device's connection and its modules' (rare enough to walk every connection)
      for (const c of [...this.byId.values()]) if (c.deviceId === e.device.deviceId && c.state !== 'awaiting-connect') c.close(reason)
      for (const c of this.waitingToOpen) {
        if (c.deviceId !== e.device.deviceId) continue
        this.waitingToOpen.delete(c)
        c.close(reason)
      }
    }
    if (e.kind === 'deleted') {
      // after its connections' closes recorded theirs: a device created again under this id starts with no history
      this.lastActivity.delete(e.device.deviceId)
      // its queue is dropped with it; the shard's report of that may come after the device is created again
      this.c2dCounts.delete(e.device.deviceId)
      this.connectedAt.delete(e.device.deviceId)
      this.stateChangedAt.delete(e.device.deviceId)
      this.activity?.forget(e.device.deviceId)
    }
  }

  /**
   * A shared access policy changed: a connection whose token that policy's keys no longer sign (the
   * key regenerated, the policy deleted or its DeviceConnect taken away) closes now.
   */
  policiesChanged(): number {
    let closed = 0
    for (const c of [...this.byId.values()]) {
      const held = c.identity?.policyToken
      if (!held || this.authenticator.stillHolds(held, 'DeviceConnect')) continue
      c.close('the shared access policy key that signed its token was revoked')
      closed++
    }
    return closed
  }

  /**
   * CA certificate `name` was deleted or no longer verified: the connections whose chain led to it
   * are checked again, 250 per event-loop turn (a large fleet must not stall the loop), and close
   * if their chain no longer leads to a verified CA.
   */
  certificateRevoked(name: string): Promise<number> {
    const candidates = [...this.byId.values()].filter((c) => c.identity?.certificateIssuer === name)
    let closed = 0
    return new Promise((resolve) => {
      const batch = (from: number) => {
        for (const c of candidates.slice(from, from + 250)) {
          if (c.identity && !this.authenticator.chainStillVerified(c.identity)) {
            c.close('its certificate no longer leads to a verified CA certificate of the hub')
            closed++
          }
        }
        if (from + 250 < candidates.length) setImmediate(() => batch(from + 250))
        else resolve(closed)
      }
      batch(0)
    })
  }

  /** A deleted module's connection closes at once, and its presence is forgotten. */
  moduleRemoved(deviceId: string, moduleId: string): void {
    const key = moduleKey(deviceId, moduleId)
    this.byIdentity.get(key)?.close('module deleted')
    for (const c of this.waitingToOpen) if (identityKeyOf(c) === key) { this.waitingToOpen.delete(c); c.close('module deleted') }
    this.lastActivity.delete(key)
    this.stateChangedAt.delete(key)
    this.activity?.forget(key)
  }

  /** A device's or a module's (`{device}/{module}`) connection state. */
  connectionState(deviceId: string): { connected: boolean; since: string } {
    const since = this.connectedAt.get(deviceId)
    return since ? { connected: true, since } : { connected: false, since: this.stateChangedAt.get(deviceId) ?? NEVER }
  }

  lastActivityTime(deviceId: string): string {
    const conn = this.byIdentity.get(deviceId)
    const at = conn?.state === 'connected' ? conn.lastPacketAt : this.lastActivity.get(deviceId)
    return at ? new Date(at).toISOString() : NEVER
  }

  cloudToDeviceMessageCount(deviceId: string): number {
    return this.c2dCounts.get(deviceId) ?? 0
  }

  /** Devices with any live fact to report, possibly repeated (the rest read as never connected, no C2D pending). */
  *presentDeviceIds(): Generator<string> {
    yield* this.stateChangedAt.keys()
    yield* this.connectedAt.keys()
    yield* this.lastActivity.keys()
    yield* this.c2dCounts.keys()
  }

  private sweep(): void {
    const now = Date.now()
    for (const conn of this.byId.values()) {
      // the CONNECT deadline runs from the accept, so trickling bytes does not extend it
      if (conn.state === 'awaiting-connect' && now - conn.acceptedAt > CONNECT_TIMEOUT_MS) conn.close('no CONNECT in time')
      else if (conn.state === 'connected' && conn.keepAliveMs > 0 && now - conn.lastPacketAt > conn.keepAliveMs) {
        // while the hub itself is not reading, the client's PINGREQs wait in the socket
        if (conn.readingPaused) conn.lastPacketAt = now
        else conn.close('keep-alive expired')
      }
      if (conn.writeBlockedFor > WRITE_DRAIN_TIMEOUT_MS) conn.close('the client did not read what the hub sent in time')
    }
  }

  /** For shutdown: read nothing more, so what was read can be committed and acknowledged. */
  pauseAll(): void {
    for (const conn of this.byId.values()) conn.stopReading()
  }

  /** For shutdown, after the shards have released every ack: close every connection. */
  closeAll(reason: string): void {
    clearInterval(this.sweepTimer)
    for (const conn of [...this.byId.values()]) conn.close(reason, undefined, true)
  }
}
