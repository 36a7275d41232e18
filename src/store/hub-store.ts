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
  /** the next C2D sequence number of each device that ever had one (they stay unique across restarts) */
  c2dSequences: Database
  /** the service's C2D feedback queue (written by the main thread) */
  feedback: Database
  /** module identities, key [deviceId, moduleId] (main thread) */
  modules: Database
  /** file uploads a device started and has not finished, by correlation id (main thread) */
  fileUploads: Database
  /** the service's file-upload notification queue (main thread) */
  fileNotifications: Database
  /** automatic device and module configurations by id (main thread) */
  configurations: Database
  /** scheduled jobs by id, their per-device records (`{jobId}/{deviceId}`) and their pages of targets (src/jobs/job-store.ts; main thread) */
  jobs: Database
  jobDevices: Database
  jobPages: Database
  /** import and export jobs by id (src/jobs/import-export-jobs.ts; main thread) */
  importExportJobs: Database
  partition(p: number): Database
  /** the segment index of partition `p` (src/events/segment-index.ts), written with its segments */
  partitionIndex(p: number): Database
  /** partition `p` of a routing log endpoint (written by that partition's shard) */
  endpointPartition(name: string, p: number): Database
  endpointPartitionIndex(name: string, p: number): Database
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
  mkdirSync(dataDir, { recursive: true, mode: 0o700 })
  // maxDbs: devices, meta, sessions, checkpoints, twins, c2d, feedback, routing, up to 32 partitions
  // with their index, 10 routing log endpoints of up to 32 partitions each with theirs (672), and
  // 10 storage and 10 webhook outboxes of up to 32 partitions each (640), with room to grow
  const root = open({ path: join(dataDir, 'hub.mdb'), maxDbs: 1500, noSync: durability === 'process' })
  const opened = new Map<string, Database>()
  const named = (name: string, binary: boolean) => {
    let db = opened.get(name)
    if (!db) opened.set(name, (db = root.openDB(binary ? { name, encoding: 'binary' } : { name })))
    return db
  }
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
    c2dSequences: root.openDB({ name: 'c2d-sequences' }),
    feedback: root.openDB({ name: 'feedback' }),
    modules: root.openDB({ name: 'modules' }),
    fileUploads: root.openDB({ name: 'file-uploads' }),
    fileNotifications: root.openDB({ name: 'file-notifications' }),
    configurations: root.openDB({ name: 'configurations' }),
    jobs: root.openDB({ name: 'jobs' }),
    jobDevices: root.openDB({ name: 'job-devices' }),
    jobPages: root.openDB({ name: 'job-pages' }),
    importExportJobs: root.openDB({ name: 'import-export-jobs' }),
    partition: (p) => named(`events.${p}`, true),
    partitionIndex: (p) => named(`events.${p}.index`, false),
    endpointPartition: (name, p) => named(`route.${name.toLowerCase()}.${p}`, true),
    endpointPartitionIndex: (name, p) => named(`route.${name.toLowerCase()}.${p}.index`, false),
    routing: root.openDB({ name: 'routing' }),
    outbox: (kind, name, p) => named(outboxName(kind, name, p), true),
    async dropOutbox(kind, name, p) {
      const key = outboxName(kind, name, p)
      // `create: false` (not in lmdb's types): undefined when there is no such outbox
      const db = opened.get(key) ?? (root.openDB({ name: key, encoding: 'binary', create: false } as { name: string }) as Database | undefined)
      opened.delete(key)
      // one LMDB operation in the write thread, however large the outbox
      if (db) await db.drop()
    },
    outboxCursors: root.openDB({ name: 'outbox-cursors' }),
    close: () => root.close(),
  }
}
