// A shard's side of message routing: the compiled routes (message-router.ts) and the endpoints the
// shard writes for its own partitions: the built-in `events` log, extra partitioned logs (LMDB
// `route.{name}.{p}`, in the same transaction as the built-in endpoint), storage files and webhooks
// (handed over once the commit holding the batch is done, so their order follows the logs').
import type { HubStore } from '../src/store/hub-store.js'
import { toStoredEvent, type RawEvent } from '../src/events/segment-codec.js'
import { defaultRoutingConfig, routingActive, type RouteSource, type RoutingConfig } from '../src/routing/routing-config.js'
import { MessageRouter, type RouteTwin } from './message-router.js'
import { PartitionLog } from './partition-log.js'
import { StorageEndpoint } from './storage-endpoint.js'
import { WebhookEndpoint } from './webhook-endpoint.js'

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
}

type External = { endpoint: string; partition: number; event: RawEvent }

export class ShardRouting {
  private router: MessageRouter | null = null
  private config: RoutingConfig = defaultRoutingConfig()
  private readonly logs = new Map<string, Map<number, PartitionLog>>()
  private readonly storage = new Map<string, StorageEndpoint>()
  private readonly webhooks = new Map<string, WebhookEndpoint>()
  private external: External[] = []

  constructor(private readonly deps: ShardRoutingDeps) {}

  /** False (no custom routes): telemetry takes the plain path straight to `events`. */
  get telemetryRouted(): boolean { return this.router?.telemetryRouted ?? false }

  wants(source: RouteSource): boolean { return this.router?.wants(source) ?? false }

  /** Applies a validated configuration: compiles its routes, opens new endpoints, closes removed ones. */
  async apply(config: RoutingConfig): Promise<void> {
    this.config = config
    this.router = routingActive(config) ? new MessageRouter(config, this.deps.hubName, this.deps.twin) : null
    const names = (l: { name: string }[]) => new Set(l.map((e) => e.name.toLowerCase()))
    const logNames = names(config.endpoints.logs)
    for (const n of [...this.logs.keys()]) if (!logNames.has(n)) this.logs.delete(n)
    for (const n of logNames) {
      if (this.logs.has(n)) continue
      const parts = new Map<number, PartitionLog>()
      for (const p of this.deps.builtIn.keys()) parts.set(p, new PartitionLog(p, this.deps.store.endpointPartition(n, p), this.deps.store.endpointPartitionIndex(n, p)))
      this.logs.set(n, parts)
    }
    const closing: Promise<void>[] = []
    for (const def of config.endpoints.storageContainers) {
      const n = def.name.toLowerCase()
      const cur = this.storage.get(n)
      if (cur && JSON.stringify(cur.def) === JSON.stringify(def)) continue
      if (cur) closing.push(cur.close())
      this.storage.set(n, new StorageEndpoint(def, this.deps.dataDir, this.deps.hubName,
        (e) => this.deps.problem('storage endpoint write failed', { endpoint: def.name, error: e.message })))
    }
    for (const [n, s] of this.storage) if (!config.endpoints.storageContainers.some((d) => d.name.toLowerCase() === n)) { closing.push(s.close()); this.storage.delete(n) }
    for (const def of config.endpoints.webhooks) {
      const n = def.name.toLowerCase()
      const cur = this.webhooks.get(n)
      if (cur && JSON.stringify(cur.def) === JSON.stringify(def)) continue
      if (cur) closing.push(cur.close(0))
      this.webhooks.set(n, new WebhookEndpoint(def, this.deps.problem))
    }
    for (const [n, w] of this.webhooks) if (!config.endpoints.webhooks.some((d) => d.name.toLowerCase() === n)) { closing.push(w.close(0)); this.webhooks.delete(n) }
    await Promise.all(closing)
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
      if (d.endpoint === 'events') { this.deps.queue(this.deps.builtIn.get(partition)!, event); continue }
      const log = this.logs.get(d.endpoint)?.get(partition)
      if (log) { this.deps.queue(log, event); continue }
      this.external.push({ endpoint: d.endpoint, partition, event })
    }
  }

  /** The partitions of every log endpoint this shard writes (for retention). */
  logPartitions(): PartitionLog[] {
    return [...this.logs.values()].flatMap((m) => [...m.values()])
  }

  /** What this commit hands to storage and webhooks once it is done. */
  takeExternal(): External[] | null {
    if (this.external.length === 0) return null
    const out = this.external
    this.external = []
    return out
  }

  deliver(external: External[]): void {
    for (const x of external) {
      try {
        const e = x.event
        const stored = toStoredEvent(e.t, e.sender, e.bag, e.extra, e.body, e.src)
        const s = this.storage.get(x.endpoint)
        if (s) s.add(x.partition, stored)
        else this.webhooks.get(x.endpoint)?.add(stored)
      } catch (err) {
        this.deps.problem('endpoint delivery failed', { endpoint: x.endpoint, error: (err as Error).message })
      }
    }
  }

  /** Shutdown: writes open storage batches, gives webhooks a moment to finish. */
  async close(): Promise<void> {
    await Promise.all([...[...this.storage.values()].map((s) => s.close()), ...[...this.webhooks.values()].map((w) => w.close())])
  }
}
