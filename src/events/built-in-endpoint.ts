// The read side of the built-in endpoint: partitions, reads by sequence number or enqueued time,
// consumer groups and their checkpoints. Shards write the partitions; the edge only reads them.
import type { HubStore } from '../store/hub-store.js'
import type { StoredEvent } from '../../shards/partition-log.js'
import { HubError } from '../rest/hub-error.js'

export const DEFAULT_CONSUMER_GROUP = '$Default'
export const MAX_CONSUMER_GROUPS = 20
const CONSUMER_GROUP_NAME = /^[A-Za-z0-9$][A-Za-z0-9._\-$]{0,49}$/

export interface EventJson {
  partitionId: string
  sequenceNumber: number
  offset: string
  enqueuedTimeUtc: string
  systemProperties: Record<string, string>
  properties: Record<string, string>
  /** base64 */
  body: string
}

export interface Checkpoint { sequenceNumber: number; offset: string; updatedTimeUtc: string }

export function toEventJson(partition: number, seq: number, e: StoredEvent): EventJson {
  return {
    partitionId: String(partition), sequenceNumber: seq, offset: String(e.o), enqueuedTimeUtc: new Date(e.t).toISOString(),
    systemProperties: e.s, properties: e.p, body: Buffer.from(e.b).toString('base64'),
  }
}

export class BuiltInEndpoint {
  constructor(private readonly store: HubStore, readonly partitions: number) {}

  /** Other threads append: see their latest commits. */
  refresh(): void { this.store.root.resetReadTxn() }

  checkPartition(raw: string): number {
    const p = Number(raw)
    if (!/^\d+$/.test(raw) || p >= this.partitions) throw new HubError(404000, `partition ${raw} does not exist (0..${this.partitions - 1})`)
    return p
  }

  private first(p: number): { key: number; value: StoredEvent } | undefined {
    for (const e of this.store.partition(p).getRange({ limit: 1 })) return e as { key: number; value: StoredEvent }
    return undefined
  }

  private last(p: number): { key: number; value: StoredEvent } | undefined {
    for (const e of this.store.partition(p).getRange({ reverse: true, limit: 1 })) return e as { key: number; value: StoredEvent }
    return undefined
  }

  partitionInfo(p: number) {
    const first = this.first(p)
    const last = this.last(p)
    return {
      partitionId: String(p),
      beginSequenceNumber: first?.key ?? 0,
      lastEnqueuedSequenceNumber: last?.key ?? -1,
      lastEnqueuedOffset: last ? String(last.value.o) : '-1',
      lastEnqueuedTimeUtc: last ? new Date(last.value.t).toISOString() : null,
      isEmpty: !last,
    }
  }

  /** Sequence number the next event will get. */
  endOf(p: number): number {
    const last = this.last(p)
    return last ? last.key + 1 : 0
  }

  beginningOf(p: number): number {
    return this.first(p)?.key ?? this.endOf(p)
  }

  /** First sequence number enqueued at or after `timeMs` (times rise with sequence numbers). */
  sequenceAt(p: number, timeMs: number): number {
    for (const { key, value } of this.store.partition(p).getRange({ start: this.beginningOf(p) })) {
      if ((value as StoredEvent).t >= timeMs) return key as number
    }
    return this.endOf(p)
  }

  read(p: number, fromSequence: number, maxCount: number, upTo = Infinity): EventJson[] {
    const out: EventJson[] = []
    for (const { key, value } of this.store.partition(p).getRange({ start: fromSequence, limit: maxCount })) {
      if ((key as number) > upTo) break
      out.push(toEventJson(p, key as number, value as StoredEvent))
    }
    return out
  }

  consumerGroups(): string[] {
    return [DEFAULT_CONSUMER_GROUP, ...((this.store.meta.get('consumerGroups') as string[] | undefined) ?? [])]
  }

  checkConsumerGroup(name: string): void {
    if (!this.consumerGroups().includes(name)) throw new HubError(404000, `consumer group ${name} does not exist`)
  }

  async createConsumerGroup(name: string): Promise<void> {
    if (!CONSUMER_GROUP_NAME.test(name)) throw new HubError(400004, 'consumer group names are 1-50 letters, digits, . _ - $')
    const groups = this.consumerGroups()
    if (groups.includes(name)) return
    if (groups.length >= MAX_CONSUMER_GROUPS) throw new HubError(400004, `a hub has at most ${MAX_CONSUMER_GROUPS} consumer groups`)
    await this.store.meta.put('consumerGroups', [...groups.slice(1), name])
  }

  async deleteConsumerGroup(name: string): Promise<void> {
    if (name === DEFAULT_CONSUMER_GROUP) throw new HubError(400004, '$Default cannot be deleted')
    this.checkConsumerGroup(name)
    await this.store.meta.put('consumerGroups', this.consumerGroups().slice(1).filter((g) => g !== name))
    for (let p = 0; p < this.partitions; p++) this.store.checkpoints.remove(`${name}/${p}`)
    await this.store.checkpoints.committed
  }

  checkpoint(group: string, p: number): Checkpoint | undefined {
    return this.store.checkpoints.get(`${group}/${p}`) as Checkpoint | undefined
  }

  async setCheckpoint(group: string, p: number, sequenceNumber: number): Promise<Checkpoint> {
    if (!Number.isInteger(sequenceNumber) || sequenceNumber < 0 || sequenceNumber >= this.endOf(p)) {
      throw new HubError(400004, `sequenceNumber must be an event of partition ${p} (0..${this.endOf(p) - 1})`)
    }
    const event = this.store.partition(p).get(sequenceNumber) as StoredEvent | undefined
    const cp: Checkpoint = { sequenceNumber, offset: event ? String(event.o) : '-1', updatedTimeUtc: new Date().toISOString() }
    await this.store.checkpoints.put(`${group}/${p}`, cp)
    return cp
  }

  /**
   * Where a reader starts: `earliest`, `latest` (only new events), `checkpoint` (after the consumer
   * group's checkpoint, else earliest), a sequence number, or an ISO enqueued time.
   */
  startPosition(p: number, group: string, from: { sequenceNumber?: string | null; enqueuedTime?: string | null; position?: string | null }): number {
    if (from.sequenceNumber != null) {
      const n = Number(from.sequenceNumber)
      if (!Number.isInteger(n) || n < 0) throw new HubError(400004, 'fromSequenceNumber must be a non-negative integer')
      return Math.max(n, this.beginningOf(p))
    }
    if (from.enqueuedTime != null) {
      const t = Date.parse(from.enqueuedTime)
      if (Number.isNaN(t)) throw new HubError(400004, 'fromEnqueuedTime must be an ISO 8601 time')
      return this.sequenceAt(p, t)
    }
    switch (from.position ?? 'checkpoint') {
      case 'earliest': return this.beginningOf(p)
      case 'latest': return this.endOf(p)
      case 'checkpoint': {
        const cp = this.checkpoint(group, p)
        return cp ? Math.max(cp.sequenceNumber + 1, this.beginningOf(p)) : this.beginningOf(p)
      }
      default: throw new HubError(400004, 'from must be earliest, latest or checkpoint')
    }
  }
}
