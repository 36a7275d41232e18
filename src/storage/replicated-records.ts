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
import { JetStreamApiError } from '@nats-io/jetstream'
import type { NatsConnection } from '@nats-io/transport-node'
import { randomUUID } from 'node:crypto'
import { Packr } from 'msgpackr'
import { untilAvailable } from './until-available.js'

/** JetStream's "wrong last sequence": the key changed (or exists, or is gone) since the caller read it. */
const WRONG_LAST_SEQUENCE = 10071

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
    await r.watch(timeoutMs)
    return r
  }

  get size(): number { return this.records.size }

  get(id: string): Revisioned<T> | undefined { return this.records.get(id) }

  values(): IterableIterator<[string, Revisioned<T>]> { return this.records.entries() }

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
      if (e instanceof JetStreamApiError && e.code === WRONG_LAST_SEQUENCE) throw new RecordConflict(id, conflict)
      // kv.create reports an existing key as a plain error naming it
      if (conflict === 'exists' && /wrong last sequence|exists/i.test((e as Error).message)) throw new RecordConflict(id, conflict)
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
    for (const l of this.listeners) l(id, record, local)
  }

  private async watch(timeoutMs: number): Promise<void> {
    // the watch gives each key's last value in stream order: the stream's last message comes last of
    // what the bucket held at open (a count would not do: a failover can leave it stale)
    const last = (await untilAvailable(`bucket ${this.bucket}`, () => this.kv.status(), timeoutMs)).streamInfo.state.last_seq
    const entries = await this.kv.watch({ include: KvWatchInclude.LastValue })
    this.stopWatching = () => entries.stop()
    let loaded!: () => void
    const ready = new Promise<void>((resolve) => { loaded = resolve })
    if (last === 0) loaded()
    void (async () => {
      for await (const e of entries) {
        const id = idOf(e.key)
        if (e.operation === 'PUT') {
          const [writer, value] = packr.unpack(e.value) as [string, T]
          this.applied(id, { value, revision: e.revision }, writer === this.writer)
        }
        else this.applied(id, undefined, this.removing.has(id), e.revision)
        if (e.revision >= last) loaded()
      }
    })()
    let timer: NodeJS.Timeout | undefined
    await Promise.race([ready, new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`bucket ${this.bucket} did not load in ${timeoutMs} ms`)), timeoutMs) })])
      .finally(() => clearTimeout(timer))
  }
}
