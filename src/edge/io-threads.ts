// The main thread's side of the I/O threads (`--io-threads N`): it starts them, lets the first one
// bind the MQTT listeners and the others accept on the same sockets, and answers what they ask of
// the hub: credentials, the session open (the main edge keeps a RemoteConnection for each of their
// connections, so takeover, presence, methods and the registry's closes work across threads), the
// tier's admissions while one applies, and their reports for presence, the meter and /metrics.
import { X509Certificate } from 'node:crypto'
import type { Worker } from 'node:worker_threads'
import { DeviceAuthError, type DeviceIdentity } from '../auth/authenticator.js'
import type { Logger } from '../log.js'
import type { ShardPool } from '../shard-pool.js'
import { OP_TELEMETRY, OP_TWIN_DEVICE } from '../shard-protocol.js'
import type { HubThrottles } from '../throttle/hub-throttles.js'
import type { MeteredOperation } from '../throttle/daily-meter.js'
import { tsWorker } from '../ts-worker.js'
import type { DeviceEdge } from './device-edge.js'
import { PortBatcher, type IoCommand, type IoEvent, type ListenSpec, type SlimIdentity } from './io-protocol.js'
import type { IoThreadInit } from './io-thread.js'
import { RemoteConnection } from './remote-connection.js'
import type { PresentedChain } from '../tls/peer-chain.js'
import type { SessionResumption } from '../tls/session-resumption.js'

export interface IoThreadsOptions {
  count: number
  edge: DeviceEdge
  shards: ShardPool
  throttles: HubThrottles
  partitions: number
  framer: 'wasm' | 'js'
  key: string
  cert: string
  /** the hub's session ticket keys, shared with every thread's TLS listener */
  resumption: SessionResumption
  log: Logger
  /** an I/O thread failed: the hub stops */
  fatal(error: Error): void
}

export class ListenError extends Error {
  constructor(readonly what: 'mqttPort' | 'mqttTcpPort', readonly code: string) { super(`cannot listen (${code})`) }
}

function slim(i: DeviceIdentity): SlimIdentity {
  return {
    deviceId: i.device.deviceId, generationId: i.device.generationId, ...(i.device.modelId ? { modelId: i.device.modelId } : {}),
    ...(i.module ? { module: { moduleId: i.module.moduleId, generationId: i.module.generationId } } : {}),
    authMethod: i.authMethod, expiry: i.expiry,
  }
}

interface IoThread {
  index: number
  worker: Worker
  out: PortBatcher<IoCommand>
  /** what it last reported of its telemetry in flight */
  queue: { messages: number; bytes: number }
  /** one-shot waits for its answers ('listening', 'paused', ...) */
  waiting: Map<string, (e: IoEvent) => void>
}

export class IoThreads {
  private readonly threads: IoThread[] = []
  /** connections authenticated and not yet opened, with their full identity (keys stay on this thread) */
  private readonly authenticated = new Map<number, DeviceIdentity>()
  private admissionOnMain = false
  private stopping = false
  private readonly admissionTimer: NodeJS.Timeout

  constructor(private readonly o: IoThreadsOptions) {
    o.edge.elsewhereQueue = () => {
      let messages = 0
      let bytes = 0
      for (const t of this.threads) { messages += t.queue.messages; bytes += t.queue.bytes }
      return { messages, bytes }
    }
    o.throttles.onTierChange = () => this.admissionChanged(true)
    o.throttles.faults.onChange = () => this.admissionChanged(true)
    // faults also end by themselves
    this.admissionTimer = setInterval(() => this.admissionChanged(false), 500)
    this.admissionTimer.unref()
  }

  /** Starts the threads and their listeners; resolves with the bound ports. */
  async start(spec: ListenSpec): Promise<{ mqtt: number; mqttTcp: number | null }> {
    for (let i = 1; i <= this.o.count; i++) {
      const shardPorts = this.o.shards.connectIoThread(i)
      const init: IoThreadInit = { thread: i, threads: this.o.count, shardPorts, partitions: this.o.partitions, framer: this.o.framer, key: this.o.key, cert: this.o.cert, resumption: this.o.resumption.share() }
      const worker = tsWorker(new URL('./io-thread.ts', import.meta.url), { workerData: init, transferList: shardPorts })
      const t: IoThread = { index: i, worker, out: new PortBatcher<IoCommand>(worker), queue: { messages: 0, bytes: 0 }, waiting: new Map() }
      this.threads.push(t)
      worker.on('message', (batch: IoEvent[]) => { for (const e of batch) this.handle(t, e) })
      // during shutdown a thread that fails is said, not fatal: what it acknowledged was committed before
      worker.on('error', (e) => (this.stopping ? this.o.log.error(`I/O thread ${i} failed during shutdown`, { error: e }) : this.o.fatal(e)))
      worker.on('exit', (code) => { if (!this.stopping) this.o.fatal(new Error(`I/O thread ${i} exited with code ${code}`)) })
    }
    this.admissionChanged(true)
    // a rotation reaches every thread, so a ticket resumes on whichever thread accepts its device
    this.o.resumption.store.ring.onChange(() => {
      const keys = this.o.resumption.store.ring.snapshot()
      for (const th of this.threads) th.out.post({ t: 'ticket-keys', keys })
    })
    const first = this.threads[0]!
    const bound = await this.ask(first, { t: 'listen', spec }, 'listening')
    if (bound.t === 'listen-failed') throw new ListenError(bound.what, bound.code)
    if (bound.t !== 'listening') throw new Error('unexpected answer')
    for (const t of this.threads.slice(1)) {
      const r = await this.ask(t, { t: 'listen-fd', mqttFd: bound.mqttFd, tcpFd: bound.tcpFd }, 'listening')
      if (r.t === 'listen-failed') throw new ListenError(r.what, r.code)
    }
    return { mqtt: bound.mqttPort, mqttTcp: bound.tcpPort }
  }

  /** Stops accepting (the sockets stay open until the threads end: see io-thread.ts). */
  async stopListening(): Promise<void> {
    this.stopping = true
    await Promise.all(this.threads.map((t) => this.ask(t, { t: 'stop-listening' }, 'stopped-listening')))
  }

  /** Shutdown: every thread reads nothing more and sends what it read to the shards. */
  async pauseReading(): Promise<void> {
    await Promise.all(this.threads.map((t) => this.ask(t, { t: 'pause-reading' }, 'paused')))
  }

  /** Shutdown, after the shards stopped: each thread writes the acknowledgements they sent it, closes its connections, and ends. */
  async close(reason: string): Promise<void> {
    this.stopping = true
    clearInterval(this.admissionTimer)
    try {
      await Promise.all(this.threads.map((t) => this.ask(t, { t: 'close-all', reason }, 'closed-all', 10_000)))
    } finally {
      // the listening descriptors the threads share close here, all at once, with nothing else opening files
      await Promise.all(this.threads.map((t) => t.worker.terminate()))
    }
  }

  /** Posts a command and waits for the thread's answer of type `answer` (or a listen failure). */
  private ask(t: IoThread, c: IoCommand, answer: IoEvent['t'], timeoutMs = 30_000): Promise<IoEvent> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { t.waiting.delete(answer); reject(new Error(`I/O thread ${t.index} did not answer ${c.t} in time`)) }, timeoutMs)
      const done = (e: IoEvent) => { clearTimeout(timer); t.waiting.delete(answer); t.waiting.delete('listen-failed'); resolve(e) }
      t.waiting.set(answer, done)
      if (answer === 'listening') t.waiting.set('listen-failed', done)
      t.out.post(c)
    })
  }

  /** Whether the tier or a fault needs this thread to admit the I/O threads' traffic; told to them when it changes. */
  private admissionChanged(force: boolean): void {
    const t = this.o.throttles
    const onMain = t.limits.tier !== 'unlimited' || t.faults.active
    if (!force && onMain === this.admissionOnMain) return
    this.admissionOnMain = onMain
    for (const th of this.threads) th.out.post({ t: 'admission', onMain, meterChunkBytes: t.meter.chunkBytes, faults: t.faults.snapshot() })
  }

  private handle(t: IoThread, e: IoEvent): void {
    const edge = this.o.edge
    switch (e.t) {
      case 'auth': return this.authenticate(t, e)
      case 'open': {
        const identity = this.authenticated.get(e.connId)
        this.authenticated.delete(e.connId)
        if (!identity) return
        const remote = new RemoteConnection({ id: e.connId, ioThread: t.index, identity, clientId: e.clientId, deviceId: e.deviceId, clean: e.clean, modelId: e.modelId, transportKind: e.transportKind, acceptedAt: e.acceptedAt, lastPacketAt: e.lastPacketAt },
          (c) => t.out.post(c),
          (conn, reason) => {
            const wasConnected = conn.state === 'connected'
            conn.state = 'closed'
            edge.closed(conn, reason, undefined, wasConnected)
          })
        edge.register(remote)
        edge.openSession(remote)
        return
      }
      case 'opened':
        edge.sessionOpened(e.connId, e.present, e.filters, e.errorCode)
        if (e.errorCode === 0) t.out.post({ t: 'presence-recorded', connId: e.connId })
        return
      case 'subs': {
        const conn = edge.connectionOf(e.connId)
        if (conn instanceof RemoteConnection) conn.subscriptions = new Set(e.filters)
        t.out.post({ t: 'subs-recorded', connId: e.connId, packetId: e.packetId })
        return
      }
      case 'closed': {
        this.authenticated.delete(e.connId)
        // after the open this thread sent that shard (if it sent one): the same port keeps them in order
        if (e.shardOps) for (const op of e.shardOps.ops) this.o.shards.send(e.shardOps.shard, op)
        const conn = edge.connectionOf(e.connId)
        if (conn instanceof RemoteConnection && conn.state !== 'closed') {
          conn.lastPacketAt = e.lastPacketAt
          conn.state = 'closed'
          return edge.closed(conn, e.reason, e.fields, e.wasConnected)
        }
        // closed before it was opened, or closed from here already
        if (!conn) edge.logClosed(e.deviceId, e.transportKind, e.reason, e.fields, e.wasConnected)
        return
      }
      case 'method-response': return edge.methodResponseOf(e.key, e.deviceId, e.rid, e.status, Buffer.from(e.payload.buffer, e.payload.byteOffset, e.payload.byteLength))
      case 'shard-ops': return this.admit(t, e.ops)
      case 'report': {
        for (let i = 0; i + 1 < e.activity.length; i += 2) {
          const conn = edge.connectionOf(e.activity[i]!)
          if (conn) conn.lastPacketAt = e.activity[i + 1]!
        }
        for (const [op, [chunks, operations]] of Object.entries(e.billed)) this.o.throttles.meter.record(op as MeteredOperation, chunks, operations)
        edge.stats.merge(e.telemetryIn, e.deliveredOut, e.ackLatencies)
        t.queue = e.queue
        return
      }
      case 'log': return this.o.log[e.level](e.message, e.fields)
      default: t.waiting.get(e.t)?.(e)
    }
  }

  private authenticate(t: IoThread, e: Extract<IoEvent, { t: 'auth' }>): void {
    try {
      const certificates: PresentedChain | undefined = e.certificates?.map((der) => new X509Certificate(der))
      if (certificates && e.fromResumedSession) certificates.fromResumedSession = true
      const identity = this.o.edge.authenticateConnect({
        connId: e.connId, deviceId: e.deviceId, ...(e.moduleId !== undefined ? { moduleId: e.moduleId } : {}),
        ...(certificates ? { certificates } : { password: e.password }),
      }) as DeviceIdentity // synchronous on this thread
      this.authenticated.set(e.connId, identity)
      t.out.post({ t: 'auth-ok', connId: e.connId, identity: slim(identity) })
    } catch (err) {
      if (err instanceof DeviceAuthError) return t.out.post({ t: 'auth-failed', connId: e.connId, message: err.message, failure: err.failure })
      this.o.log.error('authentication failed unexpectedly', { error: err as Error })
      t.out.post({ t: 'close', connId: e.connId, reason: 'internal error on this connection' })
    }
  }

  /** Ops an I/O thread sent through here while the tier or a fault applies: admitted as the main thread's own, in order. */
  private admit(t: IoThread, ops: [number, unknown[]][]): void {
    const edge = this.o.edge
    for (const [shard, op] of ops) {
      if (op[0] === OP_TELEMETRY) {
        const [, connId, packetId, bag, payload, extra] = op as [number, number, number, string, Uint8Array, Record<string, string> | null]
        const conn = edge.connectionOf(connId)
        const body = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength)
        // a connection closed from here meanwhile (its will among them) is admitted as a will would be: billed, not refused
        if (conn && conn.state !== 'closed' && !edge.admitForwarded(conn, packetId, bag, body, extra)) {
          t.out.post({ t: 'telemetry-dropped', connId, bytes: payload.length + bag.length })
          continue
        }
        if (!conn || conn.state === 'closed') this.o.throttles.meter.bill('d2c', this.o.throttles.meter.chunks(payload.length + bag.length))
      } else if (op[0] === OP_TWIN_DEVICE) {
        const conn = edge.connectionOf(op[1] as number)
        const payload = op[4] as Uint8Array
        if (conn) edge.twinRequest(conn, op[2] as 'get' | 'patch', op[3] as string, Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength))
        continue
      }
      this.o.shards.send(shard, op)
    }
  }
}
