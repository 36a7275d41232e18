// The one LMDB environment every thread opens (LMDB is safe across threads). Named databases by
// concern; each thread opens only those it uses.
import { open, type Database, type RootDatabase } from 'lmdb'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'

export interface HubStore {
  root: RootDatabase
  devices: Database
  /** last activity of devices while disconnected (ms since the epoch), so it survives restarts */
  activity: Database
  meta: Database
  sessions: Database
  checkpoints: Database
  /** device twins by device id (written by the device's shard) */
  twins: Database
  /** C2D queues: key [deviceId, sequenceNumber] (written by the device's shard) */
  c2d: Database
  /** the service's C2D feedback queue (written by the main thread) */
  feedback: Database
  partition(p: number): Database
  /** partition `p` of a routing log endpoint (written by that partition's shard) */
  endpointPartition(name: string, p: number): Database
  /** routing configuration (routes, endpoints, enrichments) */
  routing: Database
  /** partition `p` of a storage or webhook endpoint's outbox (written by that partition's shard) */
  outbox(kind: OutboxKind, name: string, p: number): Database
  /** Deletes that outbox from the environment; settles when the removal is committed. */
  dropOutbox(kind: OutboxKind, name: string, p: number): Promise<void>
  /** where each outbox partition's deliverer is: key `{kind}/{name}/{p}` */
  outboxCursors: Database
  close(): Promise<void>
}

export type Durability = 'process' | 'power'

/** The endpoint kinds delivered from an outbox: part of its DB name, so a kind change starts afresh. */
export type OutboxKind = 'storage' | 'webhook'

/**
 * `process`: a commit is in the OS page cache before its PUBACK, so it survives the hub process dying
 * (LMDB keeps its integrity); the OS writes it to disk shortly after. `power`: every commit is also
 * flushed to disk first, surviving power loss, at about 20% less throughput (bench/RESULTS.md).
 */
export function openHubStore(dataDir: string, durability: Durability = 'process'): HubStore {
  mkdirSync(dataDir, { recursive: true })
  // maxDbs: devices, meta, sessions, checkpoints, twins, c2d, feedback, routing, up to 32 partitions,
  // and 10 routing log endpoints plus 10 storage and 10 webhook outboxes of up to 32 partitions each
  // (992), with room to grow
  const root = open({ path: join(dataDir, 'hub.mdb'), maxDbs: 1100, noSync: durability === 'process' })
  const partitions = new Map<number, Database>()
  const endpointPartitions = new Map<string, Database>()
  const outboxes = new Map<string, Database>()
  const outboxName = (kind: OutboxKind, name: string, p: number) => `outbox.${kind}.${name.toLowerCase()}.${p}`
  return {
    root,
    devices: root.openDB({ name: 'devices' }),
    activity: root.openDB({ name: 'activity' }),
    meta: root.openDB({ name: 'meta' }),
    sessions: root.openDB({ name: 'sessions' }),
    checkpoints: root.openDB({ name: 'checkpoints' }),
    twins: root.openDB({ name: 'twins' }),
    c2d: root.openDB({ name: 'c2d' }),
    feedback: root.openDB({ name: 'feedback' }),
    partition(p: number) {
      let db = partitions.get(p)
      if (!db) partitions.set(p, (db = root.openDB({ name: `events.${p}`, encoding: 'binary' })))
      return db
    },
    endpointPartition(name: string, p: number) {
      const key = `route.${name.toLowerCase()}.${p}`
      let db = endpointPartitions.get(key)
      if (!db) endpointPartitions.set(key, (db = root.openDB({ name: key, encoding: 'binary' })))
      return db
    },
    routing: root.openDB({ name: 'routing' }),
    outbox(kind, name, p) {
      const key = outboxName(kind, name, p)
      let db = outboxes.get(key)
      if (!db) outboxes.set(key, (db = root.openDB({ name: key, encoding: 'binary' })))
      return db
    },
    async dropOutbox(kind, name, p) {
      const key = outboxName(kind, name, p)
      // `create: false` (not in lmdb's types): undefined when there is no such outbox
      const db = outboxes.get(key) ?? (root.openDB({ name: key, encoding: 'binary', create: false } as { name: string }) as Database | undefined)
      outboxes.delete(key)
      // one LMDB operation in the write thread, however large the outbox
      if (db) await db.drop()
    },
    outboxCursors: root.openDB({ name: 'outbox-cursors' }),
    close: () => root.close(),
  }
}
