// The hub's routing configuration on the main thread: loaded from LMDB (`routing` DB) at start,
// changed through the REST API one change at a time (validated as a whole, stored, then applied by
// every shard before the change is answered), and the readers of routing log endpoints.
import type { HubStore } from '../store/hub-store.js'
import { BuiltInEndpoint } from '../events/built-in-endpoint.js'
import { HubError } from '../rest/hub-error.js'
import { defaultRoutingConfig, findEndpoint, validateRoutingConfig, type RoutingConfig } from './routing-config.js'
import { configuredRefusal, type DestinationPolicy } from './webhook-destination.js'
import type { WriteHealth } from '../store/write-health.js'

const KEY = 'config'

export class RoutingService {
  private config: RoutingConfig
  private changing: Promise<unknown> = Promise.resolve()
  private readonly readers = new Map<string, BuiltInEndpoint>()

  constructor(private readonly store: HubStore, private readonly partitions: number,
    private readonly applyToShards: (config: RoutingConfig) => Promise<unknown>,
    /** where webhooks may go: a destination refused outright is refused when it is configured */
    private readonly webhookPolicy: () => DestinationPolicy = () => ({ allowPrivate: true, hubPorts: [] }),
    private readonly health?: WriteHealth,
    /** Avro batches need the blob store (files under the data directory are JSON only) */
    private readonly avroAllowed = true) {
    const stored = store.routing.get(KEY) as RoutingConfig | undefined
    this.config = stored ? validateRoutingConfig(stored) : defaultRoutingConfig()
  }

  get current(): RoutingConfig { return this.config }

  /**
   * Applies `change` to a copy of the configuration, validates the result, stores and applies it.
   * Changes are serialised so two concurrent edits cannot lose one another.
   */
  update(change: (draft: RoutingConfig) => unknown): Promise<RoutingConfig> {
    const run = this.changing.then(async () => {
      const before = this.config
      const draft = structuredClone(this.config)
      change(draft)
      const next = validateRoutingConfig(draft)
      const containers = new Map<string, string>()
      for (const e of next.endpoints.storageContainers) {
        // two writers on one blob would each commit the block list it read: one's batches would vanish
        const other = containers.get(e.containerName)
        if (other !== undefined) throw new HubError(400004, `storage endpoints ${other} and ${e.name} both write to container ${e.containerName}; give one another containerName`)
        containers.set(e.containerName, e.name)
        // Azure fixes the encoding when the endpoint is created; blobs of one container file cannot mix them
        const was = before.endpoints.storageContainers.find((b) => b.name.toLowerCase() === e.name.toLowerCase())
        if (was && was.encoding !== e.encoding) throw new HubError(400004, `storage endpoint ${e.name} writes ${was.encoding}; its encoding cannot change (create another endpoint)`)
      }
      const avro = next.endpoints.storageContainers.find((e) => e.encoding !== 'JSON')
      if (avro && !this.avroAllowed) throw new HubError(400004, `storage endpoint ${avro.name}: encoding ${avro.encoding} needs the hub's blob store (--blob-store); with it off, use encoding JSON`)
      for (const w of next.endpoints.webhooks) {
        const refused = configuredRefusal(w.url, this.webhookPolicy())
        if (refused) throw new HubError(400004, `webhook ${w.name}: ${refused}`)
      }
      await (this.health ? this.health.run(() => this.store.routing.put(KEY, next)) : this.store.routing.put(KEY, next))
      this.config = next
      await this.applyToShards(next)
      // a removed log endpoint takes its readers, consumer groups and checkpoints along (the shards empty its data)
      const kept = new Set(next.endpoints.logs.map((e) => e.name.toLowerCase()))
      for (const name of before.endpoints.logs.map((e) => e.name.toLowerCase()).filter((n) => !kept.has(n))) {
        const reader = this.readers.get(name) ?? new BuiltInEndpoint(this.store, this.partitions, name, this.health)
        this.readers.delete(name)
        await reader.forget()
      }
      return next
    })
    this.changing = run.catch(() => {})
    return run
  }

  /** The reader of a routing log endpoint; 404 when there is none of that name. */
  logEndpoint(name: string): BuiltInEndpoint {
    const found = findEndpoint(this.config, name)
    if (found?.kind !== 'log') throw new HubError(404000, `no log endpoint named ${name}`)
    const key = found.def.name.toLowerCase()
    let r = this.readers.get(key)
    if (!r) this.readers.set(key, (r = new BuiltInEndpoint(this.store, this.partitions, key, this.health)))
    return r
  }
}
