// An I/O thread's device edge: the same connection handling as the main thread's (telemetry windows,
// acknowledgements, twins, C2D, keep-alive), with what the whole hub must agree on asked of the main
// thread instead of decided here: credentials, the session open (one connection per client id, the
// connection throttle), presence, method answers, and the tier's and faults' admissions (ops go
// through the main thread while those apply; see IoShardLink).
import { DeviceAuthError, type DeviceAuthFailure, type DeviceIdentity } from '../auth/authenticator.js'
import type { Logger } from '../log.js'
import type { DeviceRecord } from '../registry/device-registry.js'
import type { ModuleRecord } from '../registry/module-registry.js'
import { OP_CONNECTION_CLOSED, OP_SESSION_END } from '../shard-protocol.js'
import { METHODS_FILTER } from '../mqtt/iothub-topics.js'
import { systemClock } from '../throttle/clock.js'
import type { PresentedChain } from '../tls/peer-chain.js'
import { FaultInjector } from '../throttle/faults.js'
import { meteredSize } from '../throttle/metered-size.js'
import { DeviceEdge, identityKeyOf, type ConnectCredentials, type EdgePlacement, type ShardSender } from './device-edge.js'
import type { EdgeConnection } from './edge-connection.js'
import { EdgeStats } from './edge-stats.js'
import type { IoCommand, IoEvent, PortBatcher, SlimIdentity } from './io-protocol.js'

/** How often the main thread hears of this thread's activity, meter and counters (what /metrics and presence show lags by this). */
const REPORT_EVERY_MS = 250
/** Ack latencies sent to the main thread per report at most (the rest are dropped: they are samples). */
const MAX_LATENCIES_PER_REPORT = 1024

/** The I/O thread checks no credential itself: the registry is the main thread's. */
const NO_LOCAL_AUTHENTICATOR = new Proxy({}, { get: () => { throw new Error('credentials are checked on the main thread') } }) as DeviceEdge['authenticator']

function identityOf(s: SlimIdentity): DeviceIdentity {
  // the fields a connection and its session open read; the keys stay on the main thread
  const device = { deviceId: s.deviceId, generationId: s.generationId, ...(s.modelId ? { modelId: s.modelId } : {}) } as DeviceRecord
  const module = s.module ? { deviceId: s.deviceId, ...s.module } as ModuleRecord : undefined
  return { device, ...(module ? { module } : {}), authMethod: s.authMethod, expiry: s.expiry }
}

export interface IoShardSender extends ShardSender {
  /** whether ops go through the main thread (it admits them), or will once the switch to it is done */
  readonly onMain: boolean
  /** the main thread says which way ops go from now on */
  setRoute(onMain: boolean): void
}

export class IoEdge extends DeviceEdge {
  private readonly pendingAuth = new Map<number, { resolve(i: DeviceIdentity): void; reject(e: Error): void }>()
  /** connections whose session open went to the main thread (a clean one's session ends with it) */
  private readonly sessionAsked = new Set<number>()
  /** asked, and the shard has not answered yet: the open is on the main thread's port to the shard, not this one */
  private readonly openUnanswered = new Set<number>()
  /** connections the main thread knows to be subscribed to direct methods */
  private readonly methodsKnown = new Set<number>()
  /** acks held behind a SUBACK that waits for the main thread, per connection (bounded by its unacked window) */
  /** per connection, SUBACKs in the order earned, each with the PUBACKs earned after it (flat [connId, packetId] pairs) */
  private readonly subsPending = new Map<number, { packetId: number; errorCode: number; recorded: boolean; held: number[] }[]>()
  /** sessions the shard opened, waiting for the main thread to record the connection */
  private readonly confirming = new Map<number, { present: boolean; filters: string[]; held: [string, Uint8Array, number, number, boolean][] }>()
  private readonly faultCopy = new FaultInjector(systemClock)
  private meterChunkBytes = 4096
  /** per metered operation: [messages, operations] since the last report */
  private billed: Record<string, [number, number]> = {}
  private latencies: number[] = []
  private sentIn: Record<string, number> = {}
  private sentOut: Record<string, number> = {}
  private readonly reportTimer: NodeJS.Timeout

  constructor(private readonly link: IoShardSender, log: Logger, framer: 'wasm' | 'js', placement: EdgePlacement, private readonly toMain: PortBatcher<IoEvent>) {
    super(NO_LOCAL_AUTHENTICATOR, link, log, framer, undefined, placement)
    this.stats = new EdgeStats((sec) => { if (this.latencies.length < MAX_LATENCIES_PER_REPORT) this.latencies.push(sec) })
    this.reportTimer = setInterval(() => this.report(), REPORT_EVERY_MS)
    this.reportTimer.unref()
  }

  override authenticateConnect(c: ConnectCredentials): Promise<DeviceIdentity> {
    return new Promise((resolve, reject) => {
      this.pendingAuth.set(c.connId, { resolve, reject })
      this.toMain.post({
        t: 'auth', connId: c.connId, deviceId: c.deviceId, ...(c.moduleId !== undefined ? { moduleId: c.moduleId } : {}),
        ...(c.certificates ? { certificates: c.certificates.map((x) => new Uint8Array(x.raw)), ...((c.certificates as PresentedChain).fromResumedSession ? { fromResumedSession: true } : {}) } : { password: c.password }),
      })
    })
  }

  override openSession(conn: EdgeConnection): void {
    conn.shard = this.link.shardFor(conn.deviceId)
    this.sessionAsked.add(conn.id)
    this.openUnanswered.add(conn.id)
    this.toMain.post({
      t: 'open', connId: conn.id, clientId: conn.clientId, deviceId: conn.deviceId, clean: conn.clean, modelId: conn.modelId,
      transportKind: conn.transportKind, acceptedAt: conn.acceptedAt, lastPacketAt: conn.lastPacketAt,
    })
  }

  override sessionOpened(connId: number, sessionPresent: boolean, filters: string[] = [], errorCode = 0): void {
    this.openUnanswered.delete(connId)
    const conn = this.byId.get(connId)
    if (!conn) return
    this.toMain.post({ t: 'opened', connId, present: sessionPresent, filters, errorCode })
    if (errorCode !== 0) return conn.sessionOpened(sessionPresent, filters, errorCode)
    // CONNACK waits until the main thread shows the device connected (a back end asking right after must see it)
    this.confirming.set(connId, { present: sessionPresent, filters, held: [] })
    if (filters.includes(METHODS_FILTER)) this.methodsKnown.add(connId)
  }

  /** The main thread recorded the connection as connected: CONNACK, then what the shard sent meanwhile. */
  private presenceRecorded(connId: number): void {
    const c = this.confirming.get(connId)
    if (!c) return
    this.confirming.delete(connId)
    this.byId.get(connId)?.sessionOpened(c.present, c.filters, 0)
    for (const h of c.held) super.publishFromShard(connId, ...h)
  }

  override subscriptionStored(connId: number, packetId: number, errorCode: number): void {
    const conn = this.byId.get(connId)
    if (!conn) return
    const methods = conn.subscriptions.has(METHODS_FILTER)
    // the main thread sends direct method calls only to a connection subscribed to them: when that
    // changes, the SUBACK waits until it knows (a call right after it must reach the device);
    // otherwise acks leave in the order they were earned
    const pending = this.subsPending.get(connId)
    if (errorCode !== 0 || methods === this.methodsKnown.has(connId)) {
      // behind a SUBACK that waits, this one waits too (acks leave in order)
      if (pending) pending.push({ packetId, errorCode, recorded: true, held: [] })
      else conn.subscriptionStored(packetId, errorCode)
      return
    }
    if (methods) this.methodsKnown.add(connId)
    else this.methodsKnown.delete(connId)
    const entry = { packetId, errorCode: 0, recorded: false, held: [] }
    if (pending) pending.push(entry)
    else this.subsPending.set(connId, [entry])
    this.toMain.post({ t: 'subs', connId, packetId, filters: [...conn.subscriptions] })
  }

  /** PUBACKs earned while a SUBACK waits for the main thread wait behind it (acks leave in order). */
  override acks(flat: number[], from: number): void {
    if (this.subsPending.size === 0) return super.acks(flat, from)
    const now: number[] = []
    for (let i = from; i + 1 < flat.length; i += 2) {
      const held = this.subsPending.get(flat[i]!)?.at(-1)?.held
      if (held) held.push(flat[i]!, flat[i + 1]!)
      else now.push(flat[i]!, flat[i + 1]!)
    }
    if (now.length > 0) super.acks(now, 0)
  }

  private subscriptionRecorded(connId: number, packetId: number): void {
    const pending = this.subsPending.get(connId)
    if (!pending) return
    const entry = pending.find((e) => !e.recorded && e.packetId === packetId)
    if (entry) entry.recorded = true
    // from the front, each recorded SUBACK goes out, then the PUBACKs that waited behind it
    while (pending.length > 0 && pending[0]!.recorded) {
      const e = pending.shift()!
      this.byId.get(connId)?.subscriptionStored(e.packetId, e.errorCode)
      if (e.held.length > 0) super.acks(e.held, 0)
    }
    if (pending.length === 0) this.subsPending.delete(connId)
  }

  override methodResponse(conn: EdgeConnection, rid: string, status: number, payload: Buffer): void {
    this.toMain.post({ t: 'method-response', key: identityKeyOf(conn), deviceId: conn.deviceId, rid, status, payload })
  }

  override closed(conn: EdgeConnection, reason: string, fields: Record<string, unknown> | undefined, wasConnected: boolean): void {
    this.byId.delete(conn.id)
    this.stats.forget(conn.id)
    this.heldAcks.delete(conn.id)
    this.pendingAuth.delete(conn.id)
    this.confirming.delete(conn.id)
    this.methodsKnown.delete(conn.id)
    this.subsPending.delete(conn.id)
    // after its last message and its will, on the same port: the shard unbinds it, then ends a clean session
    // (unless a newer connection on another thread opened that session since: the shard checks)
    const ops: unknown[][] = []
    if (conn.shard >= 0) ops.push([OP_CONNECTION_CLOSED, conn.id])
    if (this.sessionAsked.delete(conn.id) && conn.clean) ops.push([OP_SESSION_END, conn.clientId, conn.id])
    // the open went from the main thread: sent from here, the close could reach the shard before it
    // and leave a session open for a connection that is gone (it would hold the device's C2D)
    const behindOpen = this.openUnanswered.delete(conn.id) && ops.length > 0
    if (!behindOpen) for (const op of ops) this.link.send(conn.shard, op)
    this.toMain.post({
      t: 'closed', connId: conn.id, deviceId: conn.deviceId, transportKind: conn.transportKind, reason,
      ...(fields ? { fields: loggable(fields) } : {}), wasConnected, lastPacketAt: conn.lastPacketAt,
      ...(behindOpen ? { shardOps: { shard: conn.shard, ops } } : {}),
    })
  }

  override telemetry(conn: EdgeConnection, packetId: number, bag: string, payload: Buffer, extra: Record<string, string> | null): void {
    // with no tier or fault applying, this thread meters what it sends; otherwise the main thread does as it admits
    if (!this.link.onMain) this.bill('d2c', meteredSize(bag, payload, this.meterChunkBytes))
    super.telemetry(conn, packetId, bag, payload, extra)
  }

  override publishFromShard(connId: number, topic: string, payload: Uint8Array, qos: number, packetId: number, dup: boolean): void {
    // delivery the shard started as the session opened waits for the CONNACK (bounded by the shard's own in-flight limits)
    const confirming = this.confirming.get(connId)
    if (confirming) { confirming.held.push([topic, payload, qos, packetId, dup]); return }
    if (this.byId.get(connId)?.state === 'connected') {
      if (topic.startsWith('$iothub/twin/res/200/')) this.bill('twinReads', payload.length)
      else if (topic.startsWith('$iothub/twin/PATCH/properties/desired/')) this.bill('twinUpdates', payload.length)
      else if (!dup && topic.includes('/messages/devicebound')) this.bill('c2d', payload.length)
    }
    super.publishFromShard(connId, topic, payload, qos, packetId, dup)
  }

  override twinRequest(conn: EdgeConnection, kind: 'get' | 'patch', rid: string, payload: Buffer): void {
    if (kind === 'patch' && !this.link.onMain) this.bill('twinUpdates', payload.length)
    super.twinRequest(conn, kind, rid, payload)
  }

  protected override ackFaults(): FaultInjector {
    return this.faultCopy
  }

  /** What the main thread tells this thread's connections. */
  command(c: IoCommand): void {
    switch (c.t) {
      case 'auth-ok': {
        const p = this.pendingAuth.get(c.connId)
        this.pendingAuth.delete(c.connId)
        p?.resolve(identityOf(c.identity))
        break
      }
      case 'auth-failed': {
        const p = this.pendingAuth.get(c.connId)
        this.pendingAuth.delete(c.connId)
        p?.reject(new DeviceAuthError(c.failure as DeviceAuthFailure, c.message))
        break
      }
      case 'close': this.byId.get(c.connId)?.close(c.reason); break
      case 'throttled': {
        const conn = this.byId.get(c.connId)
        // refused before its session opened: there is no session of its to end
        if (conn?.state === 'authenticating') { this.sessionAsked.delete(c.connId); this.openUnanswered.delete(c.connId) }
        conn?.throttled(c.code, c.message, c.packetId)
        break
      }
      case 'presence-recorded': this.presenceRecorded(c.connId); break
      case 'subs-recorded': this.subscriptionRecorded(c.connId, c.packetId); break
      case 'pause-for': this.byId.get(c.connId)?.pauseReadingFor(c.ms); break
      case 'deliver': this.byId.get(c.connId)?.deliver(c.topic, c.payload, 0, 0, false); break
      case 'method': this.byId.get(c.connId)?.methodRequest(c.name, c.rid, Buffer.from(c.payload.buffer, c.payload.byteOffset, c.payload.byteLength)); break
      case 'telemetry-dropped': this.telemetryDone([c.connId, 1, c.bytes]); break
      case 'admission':
        this.link.setRoute(c.onMain)
        this.meterChunkBytes = c.meterChunkBytes
        this.faultCopy.restore(c.faults)
        break
    }
  }

  private bill(op: string, bytes: number): void {
    const b = (this.billed[op] ??= [0, 0])
    b[0] += bytes <= this.meterChunkBytes ? 1 : Math.ceil(bytes / this.meterChunkBytes)
    b[1]++
  }

  /** Once a second: what the main thread reports for this thread (presence's last activity, the meter, /metrics). */
  private report(): void {
    const activity: number[] = []
    const since = Date.now() - 2 * REPORT_EVERY_MS
    for (const c of this.byId.values()) if (c.state === 'connected' && c.lastPacketAt >= since) activity.push(c.id, c.lastPacketAt)
    this.toMain.post({
      t: 'report', activity, billed: this.billed, telemetryIn: delta(this.stats.telemetryIn, this.sentIn), deliveredOut: delta(this.stats.deliveredOut, this.sentOut),
      ackLatencies: this.latencies, queue: this.telemetryQueue,
    })
    this.billed = {}
    this.latencies = []
  }

  override closeAll(reason: string): void {
    clearInterval(this.reportTimer)
    super.closeAll(reason)
  }
}

/** What grew since the last report; `sent` becomes the current counts. */
function delta(now: Record<string, number>, sent: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [k, v] of Object.entries(now)) {
    const d = v - (sent[k] ?? 0)
    if (d > 0) out[k] = d
    sent[k] = v
  }
  return out
}

/** Log fields cross threads by structured clone: an Error keeps its message. */
function loggable(fields: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(fields)) out[k] = v instanceof Error ? v.message : v
  return out
}
