// A shard's side of message routing: the compiled routes (message-router.ts) and the endpoints the
// shard writes for its own partitions: the built-in `events` log, extra partitioned logs (LMDB
// `route.{name}.{p}`), and the outboxes of storage and webhook endpoints (outbox-endpoints.ts). All
// of them are appended in the shard's group commit, so a message's PUBACK covers every endpoint; the
// storage and webhook deliverers then read their outboxes.
import type { BlobBatchSinks } from './blob-batch-sink.js'
import type { HubStore } from '../src/store/hub-store.js'
import type { RawEvent } from '../src/events/segment-codec.js'
import { defaultRoutingConfig, routingActive, type RouteSource, type RoutingConfig } from '../src/routing/routing-config.js'
import type { DestinationPolicy } from '../src/routing/webhook-destination.js'
import { MAX_MESSAGE_BYTES } from './message-limits.js'
import { MessageRouter, type RouteTwin } from './message-router.js'
import { PartitionLog } from './partition-log.js'
import { OutboxEndpoints } from './outbox-endpoints.js'

export interface ShardRoutingDeps {
  store: HubStore
  dataDir: string
  hubName: string
  /** the built-in endpoint's partitions this shard owns */
  builtIn: Map<number, PartitionLog>
  /** adds an event to the shard's next group commit */
  queue(log: PartitionLog, e: RawEvent): void
  twin(deviceId: string): RouteTwin | undefined
  problem(message: string, fields: Record<string, unknown>): void
  /** where webhooks may go (the hub's ports are known once it listens) */
  webhookPolicy(): DestinationPolicy
  /** the hub's blob store for storage endpoints (none: they write files) */
  blobs?: BlobBatchSinks
  /** settles once what is queued and committing now is committed */
  committed(): Promise<void>
}

/** What Azure counts toward the message size: body, properties' names and values. */
function enrichedSize(e: RawEvent): number {
  let n = e.body.length + e.bag.length
  for (const k in e.extra) n += k.length + e.extra[k]!.length
  return n
}

export class ShardRouting {
  private router: MessageRouter | null = null
  /** messages enrichments pushed past 256 KB, dropped for that endpoint (reported with the shard's stats) */
  droppedEnriched = 0
  private config: RoutingConfig = defaultRoutingConfig()
  private readonly logs = new Map<string, Map<number, PartitionLog>>()
  private readonly outboxes: OutboxEndpoints
  /** configurations are applied one after another: a removed outbox is dropped before its name can be opened again */
  private applying: Promise<unknown> = Promise.resolve()

  constructor(private readonly deps: ShardRoutingDeps) {
    this.outboxes = new OutboxEndpoints({
      store: deps.store, dataDir: deps.dataDir, hubName: deps.hubName, partitions: [...deps.builtIn.keys()], problem: deps.problem,
      webhookPolicy: deps.webhookPolicy, blobs: deps.blobs,
    })
  }

  /** False (no custom routes): telemetry takes the plain path straight to `events`. */
  get telemetryRouted(): boolean { return this.router?.telemetryRouted ?? false }

  wants(source: RouteSource): boolean { return this.router?.wants(source) ?? false }

  /** Applies a validated configuration: compiles its routes, opens new endpoints, closes removed ones. */
  apply(config: RoutingConfig): Promise<void> {
    const run = this.applying.then(() => this.applyNow(config))
    this.applying = run.catch(() => {})
    return run
  }

  private applyNow(config: RoutingConfig): Promise<void> {
    // everything routing reads switches in this one turn; deliverers restart and outboxes drop after it
    this.config = config
    this.router = routingActive(config) ? new MessageRouter(config, this.deps.hubName, this.deps.twin) : null
    const logNames = new Set(config.endpoints.logs.map((e) => e.name.toLowerCase()))
    const removed: string[] = []
    for (const n of [...this.logs.keys()]) if (!logNames.has(n)) { this.logs.delete(n); removed.push(n) }
    for (const n of logNames) {
      if (this.logs.has(n)) continue
      const parts = new Map<number, PartitionLog>()
      for (const p of this.deps.builtIn.keys()) parts.set(p, new PartitionLog(p, this.deps.store.endpointPartition(n, p), this.deps.store.endpointPartitionIndex(n, p)))
      this.logs.set(n, parts)
    }
    return Promise.all([this.outboxes.apply(config), this.clearLogs(removed)]).then(() => {})
  }

  /**
   * A removed log endpoint's data goes with it, once what was already queued for it is committed.
   * Emptied rather than dropped: the main thread may still hold a handle on it.
   */
  private async clearLogs(names: string[]): Promise<void> {
    if (names.length === 0) return
    await this.deps.committed()
    const dbs = names.flatMap((n) => [...this.deps.builtIn.keys()].flatMap((p) => [this.deps.store.endpointPartition(n, p), this.deps.store.endpointPartitionIndex(n, p)]))
    await Promise.all(dbs.map((db) => db.clearAsync())).catch((e: unknown) => {
      this.deps.problem('a removed log endpoint could not be emptied', { endpoints: names, error: (e as Error).message })
    })
  }

  /** Routes one message of `partition` (owned by this shard) to its endpoints. */
  route(source: RouteSource, partition: number, e: RawEvent): void {
    if (!this.router) {
      // no routing configured: device messages go to `events` as always, events nowhere
      if (source === 'DeviceMessages') this.deps.queue(this.deps.builtIn.get(partition)!, e)
      return
    }
    let deliveries
    try {
      deliveries = this.router.route(source, e.t, e.sender, e.bag, e.extra, e.body)
    } catch (err) {
      // cannot happen with validated routes; if it does, the message still reaches `events`
      this.deps.problem('route evaluation failed', { source, deviceId: e.sender.deviceId, error: (err as Error).message })
      if (source === 'DeviceMessages') this.deps.queue(this.deps.builtIn.get(partition)!, e)
      return
    }
    for (const d of deliveries) {
      const event = d.enrichments ? { ...e, extra: { ...e.extra, ...d.enrichments } } : e
      // Azure drops, for that endpoint, a message its enrichments push past 256 KB
      if (d.enrichments && enrichedSize(event) > MAX_MESSAGE_BYTES) {
        if (this.droppedEnriched++ % 1000 === 0) {
          this.deps.problem('messages dropped for an endpoint: its enrichments made them larger than 256 KB', { endpoint: d.endpoint, dropped: this.droppedEnriched })
        }
        continue
      }
      if (d.endpoint === 'events') { this.deps.queue(this.deps.builtIn.get(partition)!, event); continue }
      const log = this.logs.get(d.endpoint)?.get(partition) ?? this.outboxes.log(d.endpoint, partition)
      if (log) this.deps.queue(log, event)
      else this.deps.problem('routed to an endpoint without a log or outbox', { endpoint: d.endpoint, partition })
    }
  }

  /** The partitions of every log endpoint and outbox this shard writes (for retention). */
  logPartitions(): PartitionLog[] {
    return [...[...this.logs.values()].flatMap((m) => [...m.values()]), ...this.outboxes.logs()]
  }

  /** Shutdown: stops the deliverers; what they have not delivered stays in the outboxes. */
  async close(): Promise<void> {
    await this.applying
    await this.outboxes.close()
  }
}
