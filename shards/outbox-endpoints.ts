// The storage and webhook endpoints of one shard: for each endpoint and partition the shard owns, an
// outbox, its cursor and a deliverer. Applying a configuration opens outboxes of new endpoints at once
// (routing may use them in the next turn), restarts the deliverers of changed ones on the same outbox
// and cursor, and drops the outboxes of removed ones: one LMDB operation each, never a walk over the
// backlog. Outboxes a crash left behind (their endpoint gone) are dropped at the next apply.
import { newIncarnation, type BlobBatchSinks } from './blob-batch-sink.js'
import { rm } from 'node:fs/promises'
import { join, resolve, sep } from 'node:path'
import type { HubStore, OutboxKind } from '../src/store/hub-store.js'
import type { RoutingConfig, StorageEndpointDef, WebhookEndpointDef } from '../src/routing/routing-config.js'
import { OutboxLog } from './endpoint-outbox.js'
import { OutboxCursors, type OutboxId } from './outbox-cursors.js'
import { StorageDeliverer } from './storage-endpoint.js'
import { WebhookDeliverer } from './webhook-endpoint.js'
import type { DestinationPolicy } from '../src/routing/webhook-destination.js'

export interface OutboxEndpointsDeps {
  store: HubStore
  dataDir: string
  hubName: string
  /** the partitions this shard owns */
  partitions: number[]
  problem(message: string, fields: Record<string, unknown>): void
  /** where webhooks may go */
  webhookPolicy(): DestinationPolicy
  /** the hub's blob store for storage endpoints (none: they write files under dataDir/endpoints) */
  blobs?: BlobBatchSinks
}

type Def = { kind: 'storage'; def: StorageEndpointDef } | { kind: 'webhook'; def: WebhookEndpointDef }
interface Deliverer { wake(): void; stop(): Promise<void> }
interface Part { log: OutboxLog; deliverer: Deliverer | null }
interface Endpoint { spec: Def; parts: Map<number, Part> }

const keyOf = (kind: OutboxKind, name: string) => `${kind}/${name.toLowerCase()}`

export class OutboxEndpoints {
  /** by lower-case endpoint name (names are unique across kinds) */
  private readonly endpoints = new Map<string, Endpoint>()
  private readonly cursors: OutboxCursors

  constructor(private readonly deps: OutboxEndpointsDeps) {
    this.cursors = new OutboxCursors(deps.store.outboxCursors)
  }

  /** The outbox a message routed to `endpoint` in `partition` goes to; undefined if it is no storage or webhook endpoint. */
  log(endpoint: string, partition: number): OutboxLog | undefined {
    return this.endpoints.get(endpoint.toLowerCase())?.parts.get(partition)?.log
  }

  /** Every outbox partition (for retention: a receiver that never answers cannot grow one beyond it). */
  logs(): OutboxLog[] {
    return [...this.endpoints.values()].flatMap((e) => [...e.parts.values()].map((p) => p.log))
  }

  /**
   * Switches to `config`'s endpoints: the outboxes are open and retired when this returns; the promise
   * settles once deliverers are restarted and removed outboxes dropped. Calls must not overlap.
   */
  apply(config: RoutingConfig): Promise<void> {
    const wanted = new Map<string, Def>()
    for (const def of config.endpoints.storageContainers) wanted.set(def.name.toLowerCase(), { kind: 'storage', def })
    for (const def of config.endpoints.webhooks) wanted.set(def.name.toLowerCase(), { kind: 'webhook', def })
    const removed: Endpoint[] = []
    const restarted: Endpoint[] = []
    for (const [name, cur] of this.endpoints) {
      const next = wanted.get(name)
      if (next && next.kind === cur.spec.kind) {
        if (JSON.stringify(next.def) !== JSON.stringify(cur.spec.def)) { cur.spec = next; restarted.push(cur) }
        continue
      }
      // gone, or now of another kind (whose outbox has another name): what it has not delivered is dropped
      for (const p of cur.parts.values()) p.log.retire()
      this.endpoints.delete(name)
      removed.push(cur)
    }
    const added: Endpoint[] = []
    for (const [name, spec] of wanted) {
      if (this.endpoints.has(name)) continue
      const endpoint: Endpoint = { spec, parts: new Map() }
      for (const p of this.deps.partitions) {
        const id = { kind: spec.kind, name, partition: p }
        const part: Part = { log: null!, deliverer: null }
        part.log = new OutboxLog(p, this.deps.store.outbox(spec.kind, name, p), this.cursors.get(id)?.next ?? 0, () => part.deliverer?.wake())
        endpoint.parts.set(p, part)
      }
      this.endpoints.set(name, endpoint)
      added.push(endpoint)
    }
    return this.settle(removed, restarted, added)
  }

  private async settle(removed: Endpoint[], restarted: Endpoint[], added: Endpoint[]): Promise<void> {
    await Promise.all([
      ...removed.map((e) => this.guard('dropping a removed endpoint\'s outbox failed', e, async () => {
        await this.stopDeliverers(e)
        // a drop that fails leaves the cursor too: the next apply tries again
        await Promise.all([...e.parts.keys()].map((p) => this.drop({ kind: e.spec.kind, name: e.spec.def.name, partition: p })))
      })),
      ...restarted.map((e) => this.guard('restarting an endpoint\'s deliverers failed', e, async () => {
        await this.stopDeliverers(e)
        this.startDeliverers(e)
      })),
      ...added.map((e) => this.guard('opening an endpoint\'s outbox failed', e, async () => {
        try {
          // the cursor marks the outbox as existing, so a removal a crash interrupts is finished later
          await Promise.all([...e.parts.keys()].map(async (p) => {
            const id = { kind: e.spec.kind, name: e.spec.def.name, partition: p }
            if (!this.cursors.get(id)) await this.cursors.put(id, { next: 0, incarnation: newIncarnation() })
          }))
        } finally {
          this.startDeliverers(e)
        }
      })),
    ])
    await this.guard('dropping outboxes of removed endpoints failed', null, () => this.dropLeftovers())
  }

  /** A failure here is logged, not thrown: the configuration is in force, and its routing must not stop. */
  private async guard(message: string, e: Endpoint | null, step: () => Promise<void>): Promise<void> {
    try {
      await step()
    } catch (err) {
      this.deps.problem(message, { ...(e ? { endpoint: e.spec.def.name } : {}), error: (err as Error).message })
    }
  }

  /** Outboxes whose endpoint was removed while a crash cut the clean-up short. */
  private async dropLeftovers(): Promise<void> {
    const leftovers = this.cursors.list(this.deps.partitions).filter((id) => this.endpoints.get(id.name)?.spec.kind !== id.kind)
    await Promise.all(leftovers.map((id) => this.drop(id)))
  }

  private async drop(id: OutboxId): Promise<void> {
    // the outbox and its cursor go in one transaction: a cursor always means an outbox to clean up
    await Promise.all([this.deps.store.dropOutbox(id.kind, id.name, id.partition), this.cursors.remove(id)])
    if (id.kind === 'storage') await rm(this.stagingFile(id.name, id.partition), { force: true })
  }

  private stagingFile(name: string, partition: number): string {
    return inside(join(this.deps.dataDir, 'endpoint-staging'), name.toLowerCase(), `${partition}.jsonl`)
  }

  private startDeliverers(e: Endpoint): void {
    for (const [p, part] of e.parts) {
      const common = { partition: p, outbox: part.log.database, cursors: this.cursors, problem: this.deps.problem }
      part.deliverer = e.spec.kind === 'storage'
        ? new StorageDeliverer({
          ...common, def: e.spec.def, hubName: this.deps.hubName, blobs: this.deps.blobs,
          root: inside(join(this.deps.dataDir, 'endpoints'), e.spec.def.name), stagingFile: this.stagingFile(e.spec.def.name, p),
        })
        : new WebhookDeliverer({ ...common, def: e.spec.def, policy: this.deps.webhookPolicy })
    }
  }

  private async stopDeliverers(e: Endpoint): Promise<void> {
    await Promise.all([...e.parts.values()].map(async (part) => {
      const d = part.deliverer
      part.deliverer = null
      await d?.stop()
    }))
  }

  /** Shutdown: stops every deliverer; what is not delivered stays in the outboxes. */
  async close(): Promise<void> {
    await Promise.all([...this.endpoints.values()].map((e) => this.stopDeliverers(e)))
  }
}

/** `base/...parts`, refusing anything that would resolve outside `base` (names are validated; this is the last line of defence). */
function inside(base: string, ...parts: string[]): string {
  const path = resolve(base, ...parts)
  if (!path.startsWith(resolve(base) + sep)) throw new Error(`endpoint path ${JSON.stringify(parts.join('/'))} leaves ${base}`)
  return path
}
