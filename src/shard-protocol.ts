// What crosses between the edge (main thread) and the shards (worker threads). Each direction sends
// one msgpackr-packed array of ops per event-loop turn, never one message per MQTT packet.

/** FNV-1a over the device id: picks the built-in endpoint partition, and through it the shard. */
export function deviceHash(deviceId: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < deviceId.length; i++) {
    h ^= deviceId.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

/** Where a module's state is kept in its device's shard (device ids cannot hold `/`, so no device has this key). */
export function moduleKey(deviceId: string, moduleId: string): string {
  return `${deviceId}/${moduleId}`
}

/** The device and module of a key moduleKey made (a plain device id has no module). */
export function splitIdentityKey(key: string): { deviceId: string; moduleId?: string } {
  const slash = key.indexOf('/')
  return slash < 0 ? { deviceId: key } : { deviceId: key.slice(0, slash), moduleId: key.slice(slash + 1) }
}

export function partitionOf(deviceId: string, partitions: number): number {
  return deviceHash(deviceId) % partitions
}

/** A partition has one writer: the shard that owns it, so sequence numbers need no lock. */
export function shardOfPartition(partition: number, shards: number): number {
  return partition % shards
}

export function shardOf(deviceId: string, partitions: number, shards: number): number {
  return shardOfPartition(partitionOf(deviceId, partitions), shards)
}

/**
 * Connection ids carry the thread that holds the connection: `id % CONN_ID_STRIDE` is 0 for the
 * main thread and k for I/O thread k, so a shard sends what concerns a connection straight to
 * that thread. At most CONN_ID_STRIDE - 1 I/O threads.
 */
export const CONN_ID_STRIDE = 64

export function threadOfConnection(connId: number): number {
  return connId % CONN_ID_STRIDE
}

// edge → shard ops
export const OP_TELEMETRY = 1 // [op, connId, packetId (0 for QoS 0), bag, payload, extraProps|null]
export const OP_SESSION_OPEN = 2 // [op, connId, clientId, clean, deviceId, generationId, authMethod, modelId, moduleId ('' for a device)]: also binds connId to its device or module
export const OP_CONNECTION_CLOSED = 6 // [op, connId]: unbinds connId (after its will, if any)
export const OP_SUBSCRIBE = 3 // [op, connId, clientId, [[filter, qos], ...], packetId]: answered by OP_SUBSCRIBED once stored
export const OP_UNSUBSCRIBE = 4 // [op, connId, clientId, [filter, ...], packetId]: answered by OP_SUBSCRIBED once stored
export const OP_SESSION_END = 5 // [op, clientId, connId?] (clean-session connection closed; ignored when a newer connection opened the session since)
export const OP_REQUEST = 7 // [op, requestId, kind, deviceId, ...args]: a REST call the shard answers with OP_REPLY
export const OP_PUBACK = 8 // [op, connId, packetId, outcome?]: the device settled a C2D message the shard sent (MQTT PUBACK: complete; AMQP and HTTPS: also 'reject', 'abandon')
export const OP_TWIN_DEVICE = 9 // [op, connId, 'get' | 'patch', rid, payload]: a twin request from a device over MQTT
export const OP_DEVICE_CHANGED = 10 // [op, deviceId or moduleKey, generationId | null, created]: created/updated, or deleted (null; a module's deletion is the awaited 'module.remove' request)
export const OP_STREAM_TAIL = 11 // [op, partition, boolean]: whether live stream readers want each commit's events as a ready frame
export const OP_ROUTE_BARRIER = 13 // [op, ioThread, epoch]: answered by OP_ROUTE_BARRIER_PASSED once every op before it on this port was handled
export const OP_BIND_SENDER = 12 // [op, connId, deviceId, generationId, authMethod, moduleId ('' for a device)]: binds connId to its device or module with no session (HTTPS); OP_CONNECTION_CLOSED unbinds

// shard → edge ops
export const OP_ACKS = 1 // [op, connId, packetId, connId, packetId, ...] after the commit that holds them
export const OP_SESSION_OPENED = 2 // [op, connId, sessionPresent, [filter, ...] of the resumed session, errorCode (0: stored)]
export const OP_PARTITION_ADVANCED = 3 // [op, partition, lastSequenceNumber, firstSequenceNumber, streamFrame|null]: one commit's events
export const OP_REJECTED = 4 // [op, connId, errorCode, message, packetId (0 for QoS 0)] the message was not stored
export const OP_REPLY = 5 // [op, requestId, errorCode (0: ok), result | message]
export const OP_PUBLISH = 6 // [op, connId, topic, payload, qos, packetId, dup]: write a PUBLISH to that connection
export const OP_C2D_COUNT = 7 // [op, deviceId, pending C2D messages]
export const OP_TELEMETRY_DONE = 12 // [op, connId, count, bytes, connId, count, bytes, ...]: telemetry finished (stored, refused or dropped), for the edge's backpressure
export const OP_FEEDBACK = 8 // [op, key, stored]: a C2D feedback record the shard committed (LMDB `feedback`)
export const OP_ROUTE_BARRIER_PASSED = 14 // [op, ioThread, epoch]: to that I/O thread
export const OP_SUBSCRIBED = 13 // [op, connId, packetId, errorCode (0: stored)]: a (un)subscription is durable, its ack may leave
export const OP_LOG = 9 // [op, level, message, fields]: something the shard wants logged (never keys or tokens)

/** Request kinds (OP_REQUEST) a shard answers. */
export type ShardRequestKind = 'twin.get' | 'twin.update' | 'twin.configure' | 'module.remove' | 'c2d.send' | 'c2d.purge' | 'c2d.receive' | 'c2d.settle' | 'routing.apply' | 'hub.ports' | 'blob.endpoint'

import type { Durability } from './store/hub-store.js'
import type { RoutingConfig } from './routing/routing-config.js'

export interface ShardInit {
  shardIndex: number
  shardCount: number
  partitions: number
  retentionDays: number
  dataDir: string
  durability: Durability
  /** the hub's name (events' hubName, enrichments' $iothubname, storage file names) */
  hubName: string
  /** the routing configuration at start; changes arrive as 'routing.apply' requests */
  routing: RoutingConfig
  /** writes stop while the data directory's disk has less than this free */
  minFreeDiskBytes: number
  /** whether webhooks may go to private addresses; the hub's ports arrive as a 'hub.ports' request once it listens */
  allowPrivateWebhooks: boolean
  /** storage endpoints write to the hub's blob store (its account arrives as a 'blob.endpoint' request once it is open) */
  blobStore: boolean
}

export type ControlMessage = { type: 'stop' } | { type: 'ready' } | { type: 'stopped' } | { type: 'fatal'; message: string }
  /** to a shard: the port of I/O thread `thread` (its connections' ops in both directions) */
  | { type: 'io-thread'; thread: number; port: import('node:worker_threads').MessagePort }

/**
 * Packs ops and posts them. msgpackr returns a view into its large reusable buffer, and
 * postMessage would clone that whole backing buffer; an exact-size copy, transferred, costs one
 * memcpy of the batch and nothing more.
 */
export function postBatch(target: { postMessage(value: unknown, transfer: ArrayBuffer[]): void }, packr: { pack(v: unknown): Uint8Array }, ops: unknown[][]): void {
  const exact = new Uint8Array(packr.pack(ops))
  target.postMessage(exact, [exact.buffer as ArrayBuffer])
}
