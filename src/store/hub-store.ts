// The one LMDB environment every thread opens (LMDB is safe across threads). Named databases by
// concern; each thread opens only those it uses.
import { open, type Database, type RootDatabase } from 'lmdb'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'

export interface HubStore {
  root: RootDatabase
  devices: Database
  meta: Database
  sessions: Database
  checkpoints: Database
  partition(p: number): Database
  close(): Promise<void>
}

export function openHubStore(dataDir: string): HubStore {
  mkdirSync(dataDir, { recursive: true })
  // maxDbs: devices, meta, sessions, checkpoints and up to 32 partitions, with room to grow
  const root = open({ path: join(dataDir, 'hub.mdb'), maxDbs: 64 })
  const partitions = new Map<number, Database>()
  return {
    root,
    devices: root.openDB({ name: 'devices' }),
    meta: root.openDB({ name: 'meta' }),
    sessions: root.openDB({ name: 'sessions' }),
    checkpoints: root.openDB({ name: 'checkpoints' }),
    partition(p: number) {
      let db = partitions.get(p)
      if (!db) partitions.set(p, (db = root.openDB({ name: `events.${p}` })))
      return db
    },
    close: () => root.close(),
  }
}
