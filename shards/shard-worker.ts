// A shard: a worker thread that owns the sessions of the devices hashed to it and the built-in
// endpoint partitions those devices write to. It never touches a socket; the edge sends it batches
// of ops and gets back batches of acknowledgements, each sent only after LMDB committed the data.
import { parentPort, workerData } from 'node:worker_threads'
import { Packr } from 'msgpackr'
import { openHubStore } from '../src/store/hub-store.js'
import {
  OP_ACKS, OP_PARTITION_ADVANCED, OP_REJECTED, OP_SESSION_END, OP_SESSION_OPEN, OP_SESSION_OPENED, OP_SUBSCRIBE,
  OP_TELEMETRY, OP_UNSUBSCRIBE, partitionOf, shardOfPartition, type ControlMessage, type ShardInit,
} from '../src/shard-protocol.js'
import { parsePropertyBag, BagError } from '../src/mqtt/property-bag.js'
import { PartitionLog } from './partition-log.js'
import { SessionStore } from './session-store.js'

export const MAX_MESSAGE_BYTES = 256 * 1024

const init = workerData as ShardInit
const port = parentPort!
const packr = new Packr({ useRecords: false })
const store = openHubStore(init.dataDir)
const sessions = new SessionStore(store.sessions)
const logs = new Map<number, PartitionLog>()
for (let p = 0; p < init.partitions; p++) {
  if (shardOfPartition(p, init.shardCount) === init.shardIndex) logs.set(p, new PartitionLog(p, store.partition(p)))
}
const pendingCommits = new Set<Promise<unknown>>()

function handleBatch(ops: unknown[][]): void {
  const acks: number[] = []
  const replies: unknown[][] = []
  const touched = new Set<PartitionLog>()
  let lastWrite: Promise<unknown> | undefined
  const now = Date.now()
  for (const op of ops) {
    switch (op[0]) {
      case OP_TELEMETRY: {
        const [, connId, packetId, deviceId, generationId, authMethod, bag, payload, extra] =
          op as [number, number, number, string, string, string, string, Uint8Array, Record<string, string> | null]
        let parsed
        try {
          parsed = parsePropertyBag(bag)
        } catch (e) {
          if (!(e instanceof BagError)) throw e
          replies.push([OP_REJECTED, connId, 400004, e.message])
          continue
        }
        if (payload.length + parsed.size > MAX_MESSAGE_BYTES) {
          replies.push([OP_REJECTED, connId, 413001, `message of ${payload.length + parsed.size} bytes exceeds ${MAX_MESSAGE_BYTES}`])
          continue
        }
        const log = logs.get(partitionOf(deviceId, init.partitions))!
        const system = parsed.system
        system['iothub-connection-device-id'] = deviceId
        system['iothub-connection-auth-method'] = authMethod
        system['iothub-connection-auth-generation-id'] = generationId
        system['iothub-enqueuedtime'] = new Date(now).toISOString()
        system['iothub-message-source'] = 'Telemetry'
        const properties = extra ? Object.assign(parsed.properties, extra) : parsed.properties
        lastWrite = log.append({ t: now, s: system, p: properties, b: payload })
        touched.add(log)
        if (packetId !== 0) acks.push(connId, packetId)
        break
      }
      case OP_SESSION_OPEN: {
        const [, connId, clientId, clean] = op as [number, number, string, boolean]
        replies.push([OP_SESSION_OPENED, connId, sessions.open(clientId, clean)])
        break
      }
      case OP_SUBSCRIBE:
        sessions.subscribe(op[1] as string, op[2] as [string, number][])
        break
      case OP_UNSUBSCRIBE:
        sessions.unsubscribe(op[1] as string, op[2] as string[])
        break
      case OP_SESSION_END:
        sessions.end(op[1] as string)
        break
    }
  }
  if (replies.length > 0) port.postMessage(packr.pack(replies))
  if (!lastWrite) return
  // every put of this turn is in one LMDB transaction: its commit releases all the acks at once
  const commit = lastWrite.then(
    () => {
      const out: unknown[][] = []
      if (acks.length > 0) out.push([OP_ACKS, ...acks])
      for (const log of touched) out.push([OP_PARTITION_ADVANCED, log.id, log.lastSequenceNumber])
      port.postMessage(packr.pack(out))
    },
    (err: Error) => {
      const out: unknown[][] = []
      for (let i = 0; i < acks.length; i += 2) out.push([OP_REJECTED, acks[i], 500001, `store failed: ${err.message}`])
      port.postMessage(packr.pack(out))
    },
  )
  pendingCommits.add(commit)
  void commit.finally(() => pendingCommits.delete(commit))
}

const retentionTimer = setInterval(() => {
  const cutoff = Date.now() - init.retentionDays * 86_400_000
  for (const log of logs.values()) void log.trim(cutoff)
}, 60_000)
retentionTimer.unref()

port.on('message', (msg: Uint8Array | ControlMessage) => {
  if (msg instanceof Uint8Array) {
    handleBatch(packr.unpack(msg) as unknown[][])
    return
  }
  if (msg.type === 'stop') {
    clearInterval(retentionTimer)
    void Promise.all(pendingCommits)
      .then(() => store.close())
      .finally(() => port.postMessage({ type: 'stopped' } satisfies ControlMessage))
  }
})
port.postMessage({ type: 'ready' } satisfies ControlMessage)
