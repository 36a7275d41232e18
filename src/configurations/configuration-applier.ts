// Applies automatic configurations to the twins they target, the way Azure does: each cycle has the
// query worker scan the twins once (never this event loop; src/query/configuration-plan.ts), pick for
// each twin the configuration with the highest priority (the newest on a tie), and return the twins
// that change, a page at a time. The winner's content is written into the twin's desired properties
// the first time it wins there, and every targeting configuration is recorded in the twin's
// `configurations` (Applied for the winner, Targeted for the rest). A twin no longer targeted loses
// its entry but keeps what was written (as in Azure). The same scan counts each configuration's
// system and custom metrics. A cycle runs every `configurationIntervalSeconds`, and soon after a
// configuration changes.
import type { Logger } from '../log.js'
import type { QueryPool } from '../query/query-pool.js'
import type { ModuleRegistry } from '../registry/module-registry.js'
import type { ShardPool } from '../shard-pool.js'
import { splitIdentityKey } from '../shard-protocol.js'
import { targetsModules, type ConfigurationRecord, type ConfigurationStore } from './configuration-store.js'
import { contentPatch } from './content-patch.js'

type Json = Record<string, unknown>

/** Twin writes a cycle keeps in flight at once. */
const WRITES_IN_FLIGHT = 16
/** Changes the worker returns per page of its scan: what a cycle holds at once. */
const CHANGES_PER_PAGE = 500
/** Twins one page scans at most, and for how long: a page holds the query worker briefly, so queries interleave. */
const TWINS_PER_PAGE = 2000
const PAGE_MS = 50

/** Highest priority first; on a tie, the one created last. */
function beats(a: ConfigurationRecord, b: ConfigurationRecord): boolean {
  return a.priority !== b.priority ? a.priority > b.priority : a.createdTimeUtc > b.createdTimeUtc
}

/** Runs `work` over `items` with at most `limit` at once; every failure is counted, none stops the rest. */
async function eachLimited<T>(items: T[], limit: number, work: (item: T) => Promise<unknown>): Promise<number> {
  let next = 0
  let failed = 0
  const lane = async () => {
    while (next < items.length) {
      const item = items[next++]!
      try { await work(item) } catch { failed++ }
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane))
  return failed
}

export class ConfigurationApplier {
  private timer: NodeJS.Timeout | undefined
  private running: Promise<void> | undefined
  private again = false
  private closed = false
  /** cycles completed (for tests and /metrics-style checks) */
  cycles = 0

  constructor(
    private readonly store: ConfigurationStore,
    private readonly queries: QueryPool,
    private readonly shards: ShardPool,
    private readonly modules: ModuleRegistry,
    private readonly log: Logger,
    private readonly intervalMs: number,
  ) {
    store.onChange = () => { this.statusesToClear = true; this.soon() }
  }

  start(): void {
    this.schedule(this.intervalMs)
  }

  private schedule(ms: number): void {
    if (this.closed) return
    clearTimeout(this.timer)
    this.timer = setTimeout(() => this.soon(), ms)
    this.timer.unref()
  }

  /** A cycle now, or right after the one running. */
  soon(): void {
    if (this.closed) return
    if (this.running) { this.again = true; return }
    this.running = this.cycle().catch((e: unknown) => this.log.warn('configuration cycle failed; the next one retries', { error: e as Error }))
      .finally(() => {
        this.running = undefined
        this.cycles++
        if (this.again) { this.again = false; this.soon() } else this.schedule(this.intervalMs)
      })
  }

  async close(): Promise<void> {
    this.closed = true
    clearTimeout(this.timer)
    await this.running
  }

  /** whether twins may still carry statuses of deleted configurations (a scan with none left clears them) */
  private statusesToClear = true

  private async cycle(): Promise<void> {
    const all = this.store.all()
    // with no configurations, and none deleted since the last full scan, there is nothing to scan for
    if (all.length === 0 && !this.statusesToClear) return
    const totals = { targeted: new Map<string, number>(), applied: new Map<string, number>(), metrics: new Map<string, number>() }
    const failed = await this.applyTo(all.filter((c) => !targetsModules(c)), all, false, totals)
      + await this.applyTo(all.filter(targetsModules), all, true, totals)
    if (this.closed) return
    // cleared only once every clearing write went through
    if (all.length === 0 && failed === 0) this.statusesToClear = false
    for (const c of all) {
      const custom: Record<string, number> = {}
      for (const name of Object.keys(c.metrics.queries)) custom[name] = totals.metrics.get(`${c.id}\n${name}`) ?? 0
      await this.store.setResults(c.id, { system: { targetedCount: totals.targeted.get(c.id) ?? 0, appliedCount: totals.applied.get(c.id) ?? 0 }, custom })
    }
  }

  /**
   * One kind of twin (device or module twins): the query worker scans them a page of changes at a
   * time, and this writes each change before asking for the next page. Every configuration's metrics
   * are counted on the collection they query.
   */
  private async applyTo(configs: ConfigurationRecord[], all: ConfigurationRecord[], modules: boolean,
    totals: { targeted: Map<string, number>; applied: Map<string, number>; metrics: Map<string, number> }): Promise<number> {
    const byId = new Map(configs.map((c) => [c.id, c]))
    // rank: priority first, then creation time (the newest wins a tie)
    const ranked = [...configs].sort((a, b) => (beats(a, b) ? 1 : beats(b, a) ? -1 : 0))
    const request = {
      modules,
      configurations: ranked.map((c, rank) => ({ id: c.id, condition: c.targetCondition, rank })),
      metrics: all.flatMap((c) => Object.entries(c.metrics.queries).map(([name, query]) => ({ configurationId: c.id, name, query }))),
      maxChanges: CHANGES_PER_PAGE,
      maxScanned: TWINS_PER_PAGE,
      maxMs: PAGE_MS,
    }
    let after: string | undefined
    let failed = 0
    do {
      if (this.closed) return failed
      const plan = await this.queries.plan({ ...request, ...(after === undefined ? {} : { after }) })
      for (const [id, n] of Object.entries(plan.targeted)) totals.targeted.set(id, (totals.targeted.get(id) ?? 0) + n)
      for (const [id, n] of Object.entries(plan.applied)) totals.applied.set(id, (totals.applied.get(id) ?? 0) + n)
      for (const [k, n] of Object.entries(plan.metrics)) totals.metrics.set(k, (totals.metrics.get(k) ?? 0) + n)
      failed += await eachLimited(plan.changes, WRITES_IN_FLIGHT, async (change) => {
        const winner = change.apply === undefined ? undefined : byId.get(change.apply)
        const content = winner && (modules ? winner.content.moduleContent : winner.content.deviceContent)
        try {
          const patch = content ? contentPatch(content) : null
          // a module's twin lives in its device's shard
          const { deviceId, moduleId } = splitIdentityKey(change.key)
          await (moduleId === undefined
            ? this.shards.request('twin.configure', deviceId, patch, change.statuses)
            : this.shards.requestForModule('twin.configure', deviceId, moduleId, patch, change.statuses))
          // an IoT Edge deployment writes each module's desired properties, on the modules the device has
          if (winner?.content.modulesContent) await this.deploy(change.key, winner.content.modulesContent)
        } catch (e) {
          if (winner) totals.applied.set(winner.id, (totals.applied.get(winner.id) ?? 1) - 1)
          throw e
        }
      })
      after = plan.resumeAfter
    } while (after !== undefined)
    if (failed > 0) this.log.warn('configuration not written to some twins; the next cycle retries', { twins: failed })
    return failed
  }

  /** An IoT Edge deployment's module content, on the device's modules that exist (`$edgeAgent`, `$edgeHub`, …). */
  async deploy(deviceId: string, modulesContent: Json): Promise<void> {
    for (const [moduleId, c] of Object.entries(modulesContent)) {
      if (!this.modules.get(deviceId, moduleId)) continue
      await this.shards.requestForModule('twin.configure', deviceId, moduleId, (c as Json)['properties.desired'], null)
    }
  }
}
