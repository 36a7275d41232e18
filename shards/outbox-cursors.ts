// Where each storage and webhook endpoint partition's deliverer is in its outbox (LMDB
// `outbox-cursors`, key `{kind}/{name}/{p}`): the next sequence number to deliver. A cursor moves
// only after the delivery before it succeeded, so after a crash a deliverer resumes at the first event
// not known to be delivered. A cursor exists for every outbox, which is how outboxes of endpoints
// removed while a crash interrupted the clean-up are found again.
import type { Database } from 'lmdb'
import type { OutboxKind } from '../src/store/hub-store.js'

/** A storage publish under way: the staged batch goes into `file` (truncated back to `base` bytes first; -1: new file). */
export interface PublishIntent { file: string; base: number; end: number }
/** The same into a blob store: the staged batch becomes block `block` of `blob` in `container`. */
export interface BlobPublishIntent { container: string; blob: string; block: string; end: number; records: number }

export interface OutboxCursor {
  /** the next sequence number to deliver */
  next: number
  /** storage only: set while a staged batch is moved into its file, so a crash there is finished exactly once */
  publish?: PublishIntent | BlobPublishIntent
  /** storage: the endpoint's incarnation, part of its block ids (an endpoint created again gets a new one) */
  incarnation?: string
  /** storage into blobs: the position before batches the store may not have saved yet (the outbox keeps them) */
  safe?: number
  /** storage into blobs: [end, committed at] of each batch after `safe`, so a redo cuts them where they were */
  held?: [number, number][]
  /** the endpoint settings the held batches were cut with */
  heldFor?: string
}

export interface OutboxId { kind: OutboxKind; name: string; partition: number }

const keyOf = (id: OutboxId) => `${id.kind}/${id.name.toLowerCase()}/${id.partition}`

export class OutboxCursors {
  constructor(private readonly db: Database) {}

  get(id: OutboxId): OutboxCursor | undefined {
    return this.db.get(keyOf(id)) as OutboxCursor | undefined
  }

  /** Settles once the cursor is committed. */
  async put(id: OutboxId, cursor: OutboxCursor): Promise<void> {
    await this.db.put(keyOf(id), cursor)
  }

  /** Queued in the current write, so a caller can commit it with the outbox's removal. */
  remove(id: OutboxId): Promise<boolean> {
    return this.db.remove(keyOf(id))
  }

  /** The outboxes of these partitions (endpoint names are 1-64 of `[A-Za-z0-9._-]`, so `/` splits a key). */
  list(partitions: Iterable<number>): OutboxId[] {
    const owned = new Set(partitions)
    const out: OutboxId[] = []
    for (const key of this.db.getKeys()) {
      const [kind, name, p] = String(key).split('/')
      if ((kind === 'storage' || kind === 'webhook') && name && owned.has(Number(p))) out.push({ kind, name, partition: Number(p) })
    }
    return out
  }
}
