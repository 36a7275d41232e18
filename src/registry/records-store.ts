// Where the registry keeps its records: LMDB on one node, a replicated key-value bucket shared by the
// nodes in cluster mode (storage/replicated-records.ts). The registry keeps its in-memory copy and
// its etags either way; the store commits, and in cluster mode also refuses a write when another
// node changed the record since this node saw it, and tells this node of the other nodes' changes.
import type { Database } from 'lmdb'
import { HubError } from '../rest/hub-error.js'
import { RecordConflict, type ReplicatedRecords } from '../storage/replicated-records.js'

export interface RecordsStore<T> {
  /** what is stored now */
  load(): Iterable<T>
  /**
   * Commits `record` as `id`'s, replacing `previous` (the version the caller checked, undefined for a
   * create); resolves with the record as this node now shows it, when another node's later change
   * landed meanwhile (undefined: `record`).
   */
  put(id: string, record: T, previous: T | undefined): Promise<T | undefined>
  remove(id: string): Promise<void>
  /** another node's committed change (never this node's own) */
  onRemoteChange(listener: (id: string, record: T | undefined) => void): void
}

export function lmdbRecords<T>(db: Database): RecordsStore<T> {
  return {
    *load() { for (const { value } of db.getRange()) yield value as T },
    put: async (id, record) => { await db.put(id, record); return undefined },
    remove: async (id) => { await db.remove(id) },
    onRemoteChange: () => {},
  }
}

/**
 * The bucket behind the registry: a write names the revision this node last saw of the record, so
 * a change another node made meanwhile refuses it, as a stale etag is refused (412), and a device
 * another node created meanwhile refuses a create (409).
 */
export function replicatedRecords<T extends { etag?: string }>(r: ReplicatedRecords<T>, what: string): RecordsStore<T> {
  const refused = (e: unknown, id: string): never => {
    if (e instanceof RecordConflict) {
      throw e.reason === 'exists'
        ? new HubError(409001, `A ${what} with ID '${id}' is already registered.`)
        : new HubError(412001, `Precondition failed: the ${what} ${id} changed on another node since this one read it`)
    }
    throw e
  }
  return {
    *load() { for (const [, v] of r.values()) yield v.value },
    put: async (id, record, previous) => {
      const seen = r.get(id)
      // the bucket's copy must be the version the caller checked: its revision is what the write names
      if (seen && !previous) refused(new RecordConflict(id, 'exists'), id)
      if (previous && (!seen || seen.value.etag !== previous.etag)) refused(new RecordConflict(id, 'changed'), id)
      const revision = await (seen ? r.update(id, record, seen.revision) : r.create(id, record)).catch((e: unknown) => refused(e, id))
      // another node's change that came in while this write was answered stays what this node shows
      const now = r.get(id)
      return now && now.revision !== revision ? now.value : undefined
    },
    remove: async (id) => { await r.remove(id, r.get(id)?.revision).catch((e: unknown) => refused(e, id)) },
    onRemoteChange: (listener) => r.onChange((id, record, local) => { if (!local) listener(id, record?.value) }),
  }
}
