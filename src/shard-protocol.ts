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

// edge → shard ops
export const OP_TELEMETRY = 1 // [op, connId, packetId (0 for QoS 0), bag, payload, extraProps|null]
export const OP_SESSION_OPEN = 2 // [op, connId, clientId, clean, deviceId, generationId, authMethod]: also binds connId to its device
export const OP_CONNECTION_CLOSED = 6 // [op, connId]: unbinds connId (after its will, if any)
export const OP_SUBSCRIBE = 3 // [op, clientId, [[filter, qos], ...]]
export const OP_UNSUBSCRIBE = 4 // [op, clientId, [filter, ...]]
export const OP_SESSION_END = 5 // [op, clientId] (clean-session connection closed)

// shard → edge ops
export const OP_ACKS = 1 // [op, connId, packetId, connId, packetId, ...] after the commit that holds them
export const OP_SESSION_OPENED = 2 // [op, connId, sessionPresent]
export const OP_PARTITION_ADVANCED = 3 // [op, partition, lastSequenceNumber]
export const OP_REJECTED = 4 // [op, connId, errorCode, message] the message was not stored

import type { Durability } from './store/hub-store.js'

export interface ShardInit {
  shardIndex: number
  shardCount: number
  partitions: number
  retentionDays: number
  dataDir: string
  durability: Durability
}

export type ControlMessage = { type: 'stop' } | { type: 'ready' } | { type: 'stopped' } | { type: 'fatal'; message: string }

/**
 * Packs ops and posts them. msgpackr returns a view into its large reusable buffer, and
 * postMessage would clone that whole backing buffer; an exact-size copy, transferred, costs one
 * memcpy of the batch and nothing more.
 */
export function postBatch(target: { postMessage(value: unknown, transfer: ArrayBuffer[]): void }, packr: { pack(v: unknown): Uint8Array }, ops: unknown[][]): void {
  const exact = new Uint8Array(packr.pack(ops))
  target.postMessage(exact, [exact.buffer as ArrayBuffer])
}
