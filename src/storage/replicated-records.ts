// Records kept in a JetStream key-value bucket for cluster mode (issue 21): the registry, twins and
// the like, shared by every hub node. Each node holds the whole bucket in memory, filled by a watch
// that brings the other nodes' writes as they commit, so reads stay local and synchronous as on
// one node. Writes are compare-and-set on the KV revision, which is what an etag promises across
// nodes: an update names the revision it read, and a write another node made since refuses it.
// - A write resolves once the bucket's majority stored it; the local copy then shows it at once
//   (a node reads its own writes), and the watch's older news of that key is ignored.
// - Keys are the record ids base64url-encoded: KV keys allow fewer characters than device ids do.
// - Each value is stored with the writer's id: the watch may bring this node's own write before the
//   write's answer does, and it must still count as this node's (listeners tell them apart).
import { Kvm, KvWatchInclude, type KV } from '@nats-io/kv'
import { JetStreamApiError, jetstreamManager } from '@nats-io/jetstream'
import type { NatsConnection } from '@nats-io/transport-node'
import { randomUUID } from 'node:crypto'
import { Packr } from 'msgpackr'
import { untilAvailable } from './until-available.js'

/** JetStream's "wrong last sequence" (10164: while another write to the key is in flight): the key changed, exists or is gone since the caller read it. */
const WRONG_LAST_SEQUENCE = [10071, 10164]

export class RecordConflict extends Error {
  constructor(readonly key: string, readonly reason: 'exists' | 'changed') {
    super(reason === 'exists' ? `record ${key} exists already` : `record ${key} changed since revision it was read at`)
  }
}

export interface Revisioned<T> { value: T; revision: number }

export interface ReplicatedRecordsOptions {
  /** copies of the bucket (at most the cluster's node count) */
  replicas: number
  /** how long open() waits for the bucket's current contents */
  loadTimeoutMs?: number
}

const packr = new Packr({ useRecords: false })
const keyOf = (id: string) => Buffer.from(id, 'utf8').toString('base64url')
const idOf = (key: string) => Buffer.from(key, 'base64url').toString('utf8')

export class ReplicatedRecords<T> {
  private readonly records = new Map<string, Revisioned<T>>()
  /** this node's removals the watch has not shown yet: the revision removed, so older news of the key stays ignored */
  private readonly removed = new Map<string, number>()
  private readonly listeners: ((id: string, record: Revisioned<T> | undefined, local: boolean) => void)[] = []
  private stopWatching: (() => void) | undefined
  /** this instance's writes carry it; a removal carries no value, so the ids being removed here are kept */
  private readonly removing = new Set<string>()
  private readonly writer = randomUUID()

  private constructor(readonly bucket: string, private readonly kv: KV) {}

  /** Opens (or creates) the bucket and resolves once the local copy holds what it held then. */
  static async open<T>(nc: NatsConnection, bucket: string, o: ReplicatedRecordsOptions): Promise<ReplicatedRecords<T>> {
    const timeoutMs = o.loadTimeoutMs ?? 30_000
    const kv = await untilAvailable(`bucket ${bucket}`, () => new Kvm(nc).create(bucket, { replicas: o.replicas, history: 1 }), timeoutMs)
    const r = new ReplicatedRecords<T>(bucket, kv)
    // the bucket's newest message that exists (a purge can leave the stream's last sequence pointing at nothing)
    const jsm = await jetstreamManager(nc)
    const newest = await untilAvailable(`bucket ${bucket}`, () => jsm.streams.getMessage(`KV_${bucket}`, { last_by_subj: `$KV.${bucket}.>` }), timeoutMs)
    await r.watch(newest?.seq ?? 0, timeoutMs)
    return r
  }

  get size(): number { return this.records.size }

  get(id: string): Revisioned<T> | undefined { return this.records.get(id) }

  values(): IterableIterator<[string, Revisioned<T>]> { return this.records.entries() }

  /** what went wrong in the watch (a value that is not a record is skipped and told here) */
  onProblem: (message: string, fields: Record<string, unknown>) => void = () => {}

  /** Every change once it is committed: this node's own (`local`) and the others'. */
  onChange(listener: (id: string, record: Revisioned<T> | undefined, local: boolean) => void): void { this.listeners.push(listener) }

  /** Creates the record; refused (RecordConflict 'exists') if it exists. */
  async create(id: string, value: T): Promise<number> {
    const revision = await this.written(id, 'exists', () => this.kv.create(keyOf(id), packr.pack([this.writer, value])))
    this.applied(id, { value, revision }, true)
    return revision
  }

  /** Replaces the record read at `revision`; refused (RecordConflict 'changed') if it changed since. */
  async update(id: string, value: T, revision: number): Promise<number> {
    const next = await this.written(id, 'changed', () => this.kv.update(keyOf(id), packr.pack([this.writer, value]), revision))
    this.applied(id, { value, revision: next }, true)
    return next
  }

  /** Removes the record read at `revision` (any revision when omitted). */
  async remove(id: string, revision?: number): Promise<void> {
    this.removing.add(id)
    try {
      await this.written(id, 'changed', () => this.kv.delete(keyOf(id), revision === undefined ? {} : { previousSeq: revision }))
    } finally {
      this.removing.delete(id)
    }
    this.removed.set(id, this.records.get(id)?.revision ?? 0)
    this.applied(id, undefined, true)
  }

  close(): void { this.stopWatching?.() }

  private async written<R>(id: string, conflict: 'exists' | 'changed', write: () => Promise<R>): Promise<R> {
    try {
      return await write()
    } catch (e) {
      if (e instanceof JetStreamApiError && WRONG_LAST_SEQUENCE.includes(e.code)) throw new RecordConflict(id, conflict)
      throw e
    }
  }

  /** A committed state of `id`, unless the local copy already shows a later one. */
  private applied(id: string, record: Revisioned<T> | undefined, local: boolean, revision = record?.revision): void {
    const removedAt = this.removed.get(id)
    if (removedAt !== undefined && revision !== undefined) {
      if (record && revision <= removedAt) return
      this.removed.delete(id) // the watch caught up with the removal (or a later write)
    }
    const known = this.records.get(id)
    if (known && revision !== undefined && known.revision >= revision) return
    if (record) this.records.set(id, record)
    else if (known) this.records.delete(id)
    else return
    for (const l of this.listeners) {
      try { l(id, record, local) } catch (err) { this.onProblem('a record listener failed', { bucket: this.bucket, error: String(err) }) }
    }
  }

  private async watch(last: number, timeoutMs: number): Promise<void> {
    // the watch gives each key's last value in stream order: the stream's last message comes last of
    // what the bucket held at open (a count would not do: a failover can leave it stale)
    const entries = await untilAvailable(`bucket ${this.bucket}`, () => this.kv.watch({ include: KvWatchInclude.LastValue }), timeoutMs)
    this.stopWatching = () => entries.stop()
    let loaded!: () => void
    const ready = new Promise<void>((resolve) => { loaded = resolve })
    if (last === 0) loaded()
    void (async () => {
      for await (const e of entries) {
        // nothing in one entry may end the watch: a bad value is skipped and said
        try {
          const id = idOf(e.key)
          if (e.operation === 'PUT') {
            const stored = packr.unpack(e.value) as unknown
            if (!Array.isArray(stored) || stored.length !== 2 || typeof stored[0] !== 'string') throw new Error('not a [writer, value] record')
            this.applied(id, { value: stored[1] as T, revision: e.revision }, stored[0] === this.writer)
          } else this.applied(id, undefined, this.removing.has(id), e.revision)
        } catch (err) {
          this.onProblem('a bucket entry was skipped', { bucket: this.bucket, revision: e.revision, error: String(err) })
        }
        if (e.revision >= last) loaded()
      }
    })().catch((err: unknown) => this.onProblem('the bucket watch ended', { bucket: this.bucket, error: String(err) }))
    let timer: NodeJS.Timeout | undefined
    await Promise.race([ready, new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`bucket ${this.bucket} did not load in ${timeoutMs} ms`)), timeoutMs) })])
      .catch((err: unknown) => { entries.stop(); throw err })
      .finally(() => clearTimeout(timer))
  }
}
