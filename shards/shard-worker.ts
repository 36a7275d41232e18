// A shard: a worker thread that owns the sessions of the devices hashed to it and the built-in
// endpoint partitions those devices write to. It never touches a socket; the edge sends it batches
// of ops and gets back batches of acknowledgements, each sent only after LMDB committed the data.
import { BlobBatchSinks } from './blob-batch-sink.js'
import type { BlobAccess } from '../src/storage/blob-client.js'
import { parentPort, workerData, type MessagePort } from 'node:worker_threads'
import { EdgeOutboxes } from './edge-outboxes.js'
import { Packr } from 'msgpackr'
import { openHubStore } from '../src/store/hub-store.js'
import {
  OP_ACKS, OP_STREAM_TAIL, OP_C2D_COUNT, OP_CONNECTION_CLOSED, OP_DEVICE_CHANGED, OP_FEEDBACK, OP_LOG, OP_PARTITION_ADVANCED, OP_PUBACK, OP_PUBLISH, OP_REJECTED, OP_REPLY,
  OP_BIND_SENDER, OP_REQUEST, OP_ROUTE_BARRIER, OP_ROUTE_BARRIER_PASSED, OP_SESSION_END, OP_SESSION_OPEN, OP_SESSION_OPENED, OP_SUBSCRIBE, OP_SUBSCRIBED, OP_TELEMETRY, OP_TWIN_DEVICE, OP_UNSUBSCRIBE,
  moduleKey, partitionOf, shardOf, shardOfPartition, type ControlMessage, type ShardInit,
} from '../src/shard-protocol.js'
import { parsePropertyBag } from '../src/mqtt/property-bag.js'
import type { C2dOutcome } from '../src/edge/edge-connection.js'
import { PartitionLog, type LogMark } from './partition-log.js'
import { nextOffset, toStoredEvent, type RawEvent, type Sender } from '../src/events/segment-codec.js'
import { toEventJson } from '../src/events/built-in-endpoint.js'
import { SessionStore } from './session-store.js'
import { C2dQueues } from './c2d-queue.js'
import { TwinStore } from './twin-store.js'
import { DeviceServices } from './device-services.js'
import { ShardRouting } from './shard-routing.js'
import { connectionSequenceNumber, hubEvent, type HubEventInput } from './hub-events.js'
import type { RouteSource, RoutingConfig } from '../src/routing/routing-config.js'
import { WriteHealth } from '../src/store/write-health.js'
import { containLmdbDiagnostics } from '../src/store/lmdb-diagnostics.js'
import { STREAM_FRAME_BODY_BYTES } from '../src/events/event-stream.js'
import { HubError } from '../src/rest/hub-error.js'
import { TelemetryTally } from './telemetry-tally.js'
import { MAX_MESSAGE_BYTES } from './message-limits.js'
import type { DestinationPolicy } from '../src/routing/webhook-destination.js'


const init = workerData as ShardInit
const port = parentPort!
const packr = new Packr({ useRecords: false })
containLmdbDiagnostics({ warn: (message, fields) => emit([OP_LOG, 'warn', message, fields ?? {}]) })
const store = openHubStore(init.dataDir, init.durability)
const sessions = new SessionStore(store.sessions)
/** Whether this shard's writes work; while they do not, what needs one is refused with 503005 ServerBusy. */
const health = new WriteHealth({
  dataDir: init.dataDir, minFreeBytes: init.minFreeDiskBytes, name: `shard-${init.shardIndex}`,
  report: (event, fields) => emit([OP_LOG, event === 'failed' ? 'error' : 'info',
    event === 'failed' ? 'store writes failed; refusing writes until they work again' : 'store writes work again', { shard: init.shardIndex, ...fields }]),
})
/** A write that failed: reported to the health gate, answered as server busy. */
function storeFailure(e: unknown): HubError {
  if (e instanceof HubError) return e
  health.failed(e)
  return health.error()
}
/** Ops for the edge, sent as one batch per destination thread per event-loop turn. */
const outbox = new EdgeOutboxes(port, packr)
/** I/O threads' ports (their connections' ops come in and go out on them) */
const ioPorts: MessagePort[] = []
let outboxScheduled = false
function flushOutbox(): void {
  outboxScheduled = false
  outbox.flush()
}
function emit(op: unknown[]): void {
  outbox.push(op)
  if (!outboxScheduled) {
    outboxScheduled = true
    setImmediate(flushOutbox)
  }
}
const c2d = new C2dQueues({ root: store.root, c2d: store.c2d, c2dSequences: store.c2dSequences, feedback: store.feedback, shardIndex: init.shardIndex }, {
  publish: (connId, topic, payload, qos, packetId, dup) => emit([OP_PUBLISH, connId, topic, payload, qos, packetId, dup]),
  feedback: (key, stored) => emit([OP_FEEDBACK, key, stored]),
  count: (deviceId, count) => emit([OP_C2D_COUNT, deviceId, count]),
  writable: () => health.writable,
  writeFailed: (e) => storeFailure(e),
})
c2d.load((deviceId) => shardOf(deviceId, init.partitions, init.shardCount) === init.shardIndex)
const twins = new TwinStore(store.twins)
const logs = new Map<number, PartitionLog>()
for (let p = 0; p < init.partitions; p++) {
  if (shardOfPartition(p, init.shardCount) === init.shardIndex) logs.set(p, new PartitionLog(p, store.partition(p), store.partitionIndex(p)))
}
/** Where webhooks may go: the hub's own ports are filled in once it listens ('hub.ports'). */
const webhookPolicy: DestinationPolicy = { allowPrivate: init.allowPrivateWebhooks, hubPorts: [] }
/** Storage endpoints write to the hub's blob store, once the main thread shares its account ('blob.endpoint'). */
const blobs = init.blobStore ? new BlobBatchSinks() : undefined
const routing = new ShardRouting({
  webhookPolicy: () => webhookPolicy, blobs,
  committed: () => committedSoFar(),
  store, dataDir: init.dataDir, hubName: init.hubName, builtIn: logs,
  queue: (log, e) => queueWrite(log, e),
  twin: (deviceId) => { const d = twins.read(deviceId); return { tags: d.tags, properties: { desired: d.desired, reported: d.reported } } },
  problem: (message, fields) => emit([OP_LOG, 'warn', message, fields]),
})
void routing.apply(init.routing)

/** A twin change, lifecycle or connection event through routing (the caller checked a route wants it). */
function routeEvent(e: HubEventInput): void {
  routing.route(e.source, partitionOf(e.deviceId, init.partitions), hubEvent(init.hubName, e))
  queuedCount++
  if (!writeScheduled) {
    writeScheduled = true
    setImmediate(() => { writeScheduled = false; writeQueued() })
  }
}
let writeScheduled = false
const services = new DeviceServices(sessions, twins, c2d, emit, { wants: (source: RouteSource) => routing.wants(source), emit: routeEvent }, health)

function connectionEvent(sender: Sender, opType: 'deviceConnected' | 'deviceDisconnected'): void {
  if (!routing.wants('DeviceConnectionStateEvents')) return
  routeEvent({
    source: 'DeviceConnectionStateEvents', deviceId: sender.deviceId, ...(sender.moduleId ? { moduleId: sender.moduleId } : {}), generationId: sender.generationId, opType,
    schema: 'deviceConnectionStateNotification',
    body: { sequenceNumber: connectionSequenceNumber() },
  })
}

/**
 * Group commit: while a transaction is committing, new messages wait and then go to LMDB together
 * in one transaction. Committing each incoming batch on its own made commits, not CPU, the limit
 * (~400 small transactions/s, each paying a flush).
 */
/**
 * One commit at a time: when a commit fails, no later append exists yet, so every log it touched
 * can be rewound and sequence numbers stay dense (Event Hubs numbers have no gaps). Two in flight
 * could leave a gap behind a failed commit; whatever speed they might add was never measured
 * beyond this machine's noise, so it is not worth that.
 */
const MAX_COMMITS_IN_FLIGHT = 1
let queuedWrites = new Map<PartitionLog, RawEvent[]>()
let queuedCount = 0
/** telemetry in the queued write, and telemetry refused this turn: reported so the edge can bound what is in flight */
let queuedTelemetry = new TelemetryTally()
const telemetryRefused = new TelemetryTally()
let queuedAcks: number[] = []
let commitsInFlight = 0
const pendingCommits = new Set<Promise<unknown>>()

/** Connections of this shard's devices: who stamps what, and which partition they write. */
const connections = new Map<number, { sender: Sender; log: PartitionLog; clientId?: string }>()
/** which connection opened each session last: a late SESSION_END of the connection it replaced is ignored */
const sessionOwners = new Map<string, number>()

function queueWrite(log: PartitionLog, e: RawEvent): void {
  let list = queuedWrites.get(log)
  if (!list) queuedWrites.set(log, (list = []))
  list.push(e)
}

/** Why a message cannot be stored, or undefined. The bag is only decoded when it must be. */
function invalid(bag: string, payload: Uint8Array): [number, string] | undefined {
  if (bag.includes('%')) {
    try {
      decodeURIComponent(bag)
    } catch {
      return [400004, 'property bag is not URL-encoded correctly']
    }
  }
  // the encoded bag is never shorter than what Azure counts, so only a near-limit message is measured
  if (payload.length + bag.length > MAX_MESSAGE_BYTES) {
    const size = payload.length + parsePropertyBag(bag).size
    if (size > MAX_MESSAGE_BYTES) return [413001, `message of ${size} bytes exceeds ${MAX_MESSAGE_BYTES}`]
  }
  return undefined
}

function handleBatch(ops: unknown[][]): void {
  const replies = outbox
  const now = Date.now()
  for (const op of ops) {
    switch (op[0]) {
      case OP_TELEMETRY: {
        const [, connId, packetId, bag, payload, extra] = op as [number, number, number, string, Uint8Array, Record<string, string> | null]
        const conn = connections.get(connId)
        const bytes = payload.length + bag.length
        if (!conn) { telemetryRefused.add(connId, bytes); continue } // cannot happen: the edge binds before it sends telemetry
        const error = health.writable ? invalid(bag, payload) : [503005, health.error().message] as [number, string]
        if (error) {
          replies.push([OP_REJECTED, connId, ...error, packetId])
          telemetryRefused.add(connId, bytes)
          continue
        }
        // no custom routes: the plain path, straight to the built-in endpoint
        if (!routing.telemetryRouted) {
          let list = queuedWrites.get(conn.log)
          if (!list) queuedWrites.set(conn.log, (list = []))
          list.push({ t: now, sender: conn.sender, bag, extra, body: payload })
        } else {
          routing.route('DeviceMessages', conn.log.id, { t: now, sender: conn.sender, bag, extra, body: payload })
        }
        queuedCount++
        queuedTelemetry.add(connId, bytes)
        if (packetId !== 0) queuedAcks.push(connId, packetId)
        break
      }
      case OP_SESSION_OPEN: {
        const [, connId, clientId, clean, deviceId, generationId, authMethod, modelId, moduleId] = op as [number, number, string, boolean, string, string, string, string, string]
        const sender: Sender = { deviceId, generationId, authMethod }
        if (modelId) sender.modelId = modelId
        if (moduleId) sender.moduleId = moduleId
        // a module's twin and session are its own, kept under `{device}/{module}` in its device's shard
        const key = moduleId ? moduleKey(deviceId, moduleId) : deviceId
        const conn = { sender, log: logs.get(partitionOf(deviceId, init.partitions))!, clientId }
        connections.set(connId, conn)
        sessionOwners.set(clientId, connId)
        const { present, written } = sessions.open(clientId, clean, generationId)
        // CONNACK's session-present promises what is stored: it waits for the write, and so does
        // delivery (C2D, twin pushes) to the connection, which the edge would drop before CONNACK
        written.then(() => {
          if (connections.get(connId) !== conn) return // closed meanwhile
          emit([OP_SESSION_OPENED, connId, present, Object.keys(sessions.get(clientId)?.subscriptions ?? {}), 0])
          services.opened(connId, clientId, key)
          connectionEvent(sender, 'deviceConnected')
        }, (e: unknown) => emit([OP_SESSION_OPENED, connId, false, [], storeFailure(e).code]))
        break
      }
      case OP_BIND_SENDER: {
        const [, connId, deviceId, generationId, authMethod, moduleId] = op as [number, number, string, string, string, string | undefined]
        const sender: Sender = moduleId ? { deviceId, moduleId, generationId, authMethod } : { deviceId, generationId, authMethod }
        connections.set(connId, { sender, log: logs.get(partitionOf(deviceId, init.partitions))! })
        break
      }
      case OP_STREAM_TAIL:
        if (op[2]) tailed.add(op[1] as number)
        else tailed.delete(op[1] as number)
        break
      case OP_CONNECTION_CLOSED: {
        const conn = connections.get(op[1] as number)
        connections.delete(op[1] as number)
        if (conn?.clientId !== undefined && sessionOwners.get(conn.clientId) === op[1]) sessionOwners.delete(conn.clientId)
        const closed = services.closed(op[1] as number)
        // a connection a newer one took over is not a disconnect
        if (conn && closed?.current) connectionEvent(conn.sender, 'deviceDisconnected')
        break
      }
      case OP_SUBSCRIBE:
      case OP_UNSUBSCRIBE: {
        // the SUBACK / UNSUBACK leaves once the change is stored
        const [kind, connId, clientId, filters, packetId] = op as [number, number, string, unknown[], number]
        const written = kind === OP_SUBSCRIBE ? sessions.subscribe(clientId, filters as [string, number][]) : sessions.unsubscribe(clientId, filters as string[])
        written.then(() => {
          services.subscriptionsChanged(clientId)
          emit([OP_SUBSCRIBED, connId, packetId, 0])
        }, (e: unknown) => emit([OP_SUBSCRIBED, connId, packetId, storeFailure(e).code]))
        break
      }
      case OP_PUBACK:
        c2d.settle(op[1] as number, op[2] as number, (op[3] as C2dOutcome | undefined) ?? 'complete')
        break
      case OP_TWIN_DEVICE:
        services.twinFromDevice(op[1] as number, op[2] as 'get' | 'patch', op[3] as string, op[4] as Uint8Array)
        break
      case OP_REQUEST:
        if (op[2] === 'hub.ports') {
          webhookPolicy.hubPorts = op[4] as number[]
          emit([OP_REPLY, op[1], 0, null])
          break
        }
        if (op[2] === 'blob.endpoint') {
          blobs?.connect(op[4] as BlobAccess)
          emit([OP_REPLY, op[1], 0, null])
          break
        }
        if (op[2] === 'routing.apply') {
          const id = op[1] as number
          routing.apply(op[4] as RoutingConfig).then(() => emit([OP_REPLY, id, 0, null]), (e: Error) => emit([OP_REPLY, id, 500001, e.message]))
          break
        }
        services.request(op[1] as number, op[2] as string, op[3] as string, op.slice(4))
        break
      case OP_DEVICE_CHANGED:
        services.deviceChanged(op[1] as string, op[2] as string | null, op[3] === true)
        break
      case OP_ROUTE_BARRIER:
        // everything sent before it on this port is handled: the I/O thread may switch ports
        emit([OP_ROUTE_BARRIER_PASSED, op[1], op[2]])
        break
      case OP_SESSION_END: {
        // a connection on another thread may have opened the session since (a takeover across I/O threads)
        const owner = sessionOwners.get(op[1] as string)
        if (op[2] !== undefined && owner !== undefined && owner !== op[2]) break
        sessionOwners.delete(op[1] as string)
        sessions.end(op[1] as string)
        break
      }
    }
  }
  const refused = telemetryRefused.take()
  if (refused) outbox.push(refused)
  flushOutbox()
  writeQueued()
}

/** Bodies and property bags: what a frame of these events weighs, near enough. */
function eventBytes(events: RawEvent[]): number {
  let n = 0
  for (const e of events) n += e.body.length + e.bag.length
  return n
}

/** Partitions whose commits the edge wants as ready stream frames. */
const tailed = new Set<number>()

/** UTF-8 bytes, not a string: the edge sends them as they are instead of decoding and re-encoding. */
function streamFrame(partition: number, first: number, offset: number, events: RawEvent[]): Uint8Array {
  const out = new Array(events.length)
  for (let i = 0; i < events.length; i++) {
    const e = events[i]!
    out[i] = toEventJson(partition, first + i, offset, toStoredEvent(e.t, e.sender, e.bag, e.extra, e.body, e.src))
    offset = nextOffset(offset, e.body.length)
  }
  return Buffer.from(JSON.stringify(out), 'utf8')
}

function writeQueued(): void {
  if (queuedCount === 0 || commitsInFlight >= MAX_COMMITS_IN_FLIGHT) return
  const writes = queuedWrites
  const acks = queuedAcks
  queuedWrites = new Map()
  queuedAcks = []
  queuedCount = 0
  const telemetry = queuedTelemetry
  queuedTelemetry = new TelemetryTally()
  // every append's promise is awaited: a failed commit rejects them all, and none may go unhandled
  const writesDone: Promise<unknown>[] = []
  // one segment per partition, all in this turn's LMDB transaction: its commit releases every ack
  const appended: { log: PartitionLog; first: number; offset: number; events: RawEvent[]; mark: LogMark }[] = []
  for (const [log, events] of writes) {
    const { sequence, offset } = log.next
    const mark = log.mark()
    writesDone.push(log.append(events))
    appended.push({ log, first: sequence, offset, events, mark })
  }
  commitsInFlight++
  // routing may have sent every message of this turn elsewhere, or dropped it: nothing to wait for
  const commit = Promise.all(writesDone).then(
    () => {
      const out: unknown[][] = []
      const done = telemetry.take()
      if (done) out.push(done)
      if (acks.length > 0) out.push([OP_ACKS, ...acks])
      for (const a of appended) {
        if (logs.get(a.log.id) !== a.log) continue // a routing log endpoint: no live stream, no Event Hubs reader
        // live stream readers get this commit as one ready JSON frame, built here rather than on the edge
        const frame = tailed.has(a.log.id) && eventBytes(a.events) <= STREAM_FRAME_BODY_BYTES ? streamFrame(a.log.id, a.first, a.offset, a.events) : null
        out.push([OP_PARTITION_ADVANCED, a.log.id, a.first + a.events.length - 1, a.first, frame])
      }
      for (const op of out) outbox.push(op)
      outbox.flush()
    },
    (err: unknown) => {
      // nothing of this commit is stored: its messages are refused (no PUBACK), the connections
      // closed, and the next commit reuses its sequence numbers
      for (const a of appended) a.log.rewind(a.mark)
      const refused = storeFailure(err)
      const out: unknown[][] = []
      const done = telemetry.take()
      if (done) out.push(done)
      for (let i = 0; i < acks.length; i += 2) out.push([OP_REJECTED, acks[i], refused.code, refused.message, acks[i + 1]])
      for (const op of out) outbox.push(op)
      outbox.flush()
    },
  ).finally(() => {
    commitsInFlight--
    pendingCommits.delete(commit)
    writeQueued()
  })
  pendingCommits.add(commit)
}

const retentionTimer = setInterval(() => {
  if (!health.writable) return
  const cutoff = Date.now() - init.retentionDays * 86_400_000
  for (const log of [...logs.values(), ...routing.logPartitions()]) log.trim(cutoff).catch((e: unknown) => storeFailure(e))
}, 60_000)
retentionTimer.unref()
const c2dTimer = setInterval(() => c2d.sweep(), 1000)
c2dTimer.unref()

/** Settles once the commits under way, and the one that takes what is queued now, are done (unlike drained, it ends under load). */
async function committedSoFar(): Promise<void> {
  await Promise.all([...pendingCommits])
  if (queuedCount > 0) writeQueued()
  await Promise.all([...pendingCommits])
}

async function drained(): Promise<void> {
  while (pendingCommits.size > 0 || queuedCount > 0) {
    writeQueued()
    await Promise.all(pendingCommits)
  }
}

/**
 * Set once the last drain before the store closes begins: what still arrives (a close or a will of a
 * client that dropped during shutdown) would write to a closed store, which throws where no caller
 * can catch it and fails the shard. It is dropped; nothing it carries was acknowledged.
 */
let closing = false

port.on('message', (msg: Uint8Array | ControlMessage) => {
  if (msg instanceof Uint8Array) {
    if (closing) return
    handleBatch(packr.unpack(msg) as unknown[][])
    return
  }
  if (msg.type === 'io-thread') {
    // an I/O thread's connections: their ops arrive on this port, and go back on it
    const io = msg.port
    io.on('message', (m: Uint8Array) => {
      if (closing) return
      handleBatch(packr.unpack(m) as unknown[][])
    })
    outbox.attach(msg.thread, io)
    ioPorts.push(io)
    return
  }
  if (msg.type === 'stop') {
    clearInterval(retentionTimer)
    clearInterval(c2dTimer)
    health.close()
    void Promise.all([drained(), services.drained()])
      .then(() => { closing = true; return drained() })
      .then(() => routing.close())
      .then(() => blobs?.close())
      .then(() => flushOutbox())
      .then(() => store.close())
      .catch((e: unknown) => {
        // said, not thrown: a throw here would fail the shard (and the hub's exit code) after its work is done
        emit([OP_LOG, 'error', 'the shard did not close cleanly', { error: String(e) }])
        flushOutbox()
      })
      .finally(() => {
        // after this shard's last batch on each port: an I/O thread closes its connections once every shard said so
        for (const io of ioPorts) io.postMessage({ type: 'stopped' } satisfies ControlMessage)
        port.postMessage({ type: 'stopped' } satisfies ControlMessage)
      })
  }
})
port.postMessage({ type: 'ready' } satisfies ControlMessage)
