// Applies automatic configurations to the twins they target, the way Azure does: each cycle runs
// every configuration's target condition (in the query worker, never on this event loop), picks for
// each twin the configuration with the highest priority (the newest on a tie), writes that one's
// content into the twin's desired properties the first time it wins there, and records every
// targeting configuration in the twin's `configurations` (Applied for the winner, Targeted for the
// rest). A twin no longer targeted loses its entry but keeps what was written (as in Azure). Then
// it counts each configuration's system and custom metrics. A cycle runs every
// `configurationIntervalSeconds`, and soon after a configuration changes.
import type { Logger } from '../log.js'
import type { QueryPool } from '../query/query-pool.js'
import type { ModuleRegistry } from '../registry/module-registry.js'
import type { ShardPool } from '../shard-pool.js'
import { moduleKey } from '../shard-protocol.js'
import { systemQueries, targetsModules, type ConfigurationRecord, type ConfigurationStore } from './configuration-store.js'
import type { ConfigurationStatuses } from '../../shards/twin-store.js'

type Json = Record<string, unknown>

/** Twin writes a cycle keeps in flight at once. */
const WRITES_IN_FLIGHT = 16
const PAGE = 1000

/** A configuration's content paths as one desired-properties patch (`properties.desired.a.b` → `{a: {b: …}}`). */
export function contentPatch(content: Json): Json {
  const patch: Json = {}
  for (const [path, value] of Object.entries(content)) {
    const segments = path.split('.').slice(2)
    if (segments.length === 0) { Object.assign(patch, value as Json); continue }
    let at = patch
    for (const s of segments.slice(0, -1)) at = (at[s] = typeof at[s] === 'object' && at[s] !== null ? at[s] : {}) as Json
    at[segments.at(-1)!] = value
  }
  return patch
}

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
    store.onChange = () => this.soon()
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

  /** Every row of a query, page by page. */
  private async rows(query: string): Promise<Json[]> {
    const out: Json[] = []
    let continuation: string | undefined
    do {
      const r = await this.queries.run(query, PAGE, continuation)
      if (!r.ok) throw new Error(`query failed: ${r.message}`)
      out.push(...(r.page.items as Json[]))
      continuation = r.page.continuation
    } while (continuation !== undefined && !this.closed)
    return out
  }

  private async cycle(): Promise<void> {
    const all = this.store.all()
    const applied = new Map<string, number>()
    await this.applyTo(all.filter((c) => !targetsModules(c)), false, applied)
    await this.applyTo(all.filter(targetsModules), true, applied)
    for (const c of all) {
      if (this.closed) return
      const custom: Record<string, number> = {}
      for (const [name, q] of Object.entries(c.metrics.queries)) {
        try { custom[name] = (await this.rows(q)).length } catch { custom[name] = 0 }
      }
      const targeted = (await this.rows(systemQueries(c).targetedCount!)).length
      await this.store.setResults(c.id, { system: { targetedCount: targeted, appliedCount: applied.get(c.id) ?? 0 }, custom })
    }
  }

  /** One kind of twin (device or module twins): who targets what, then the writes that change anything. */
  private async applyTo(configs: ConfigurationRecord[], modules: boolean, applied: Map<string, number>): Promise<void> {
    const keyOf = (row: Json) => (modules ? moduleKey(row.deviceId as string, row.moduleId as string) : row.deviceId as string)
    const targeting = new Map<string, ConfigurationRecord[]>()
    for (const c of configs) {
      for (const row of await this.rows(systemQueries(c).targetedCount!.replace(/^SELECT deviceId/, modules ? 'SELECT deviceId, moduleId' : 'SELECT deviceId'))) {
        const k = keyOf(row)
        let list = targeting.get(k)
        if (!list) targeting.set(k, (list = []))
        list.push(c)
      }
    }
    const current = new Map<string, ConfigurationStatuses>()
    for (const row of await this.rows(`SELECT deviceId${modules ? ', moduleId' : ''}, configurations FROM ${modules ? 'devices.modules' : 'devices'} WHERE IS_DEFINED(configurations)`)) {
      current.set(keyOf(row), row.configurations as ConfigurationStatuses)
    }
    const work: { key: string; patch: Json | null; statuses: ConfigurationStatuses; winner?: ConfigurationRecord }[] = []
    for (const key of new Set([...targeting.keys(), ...current.keys()])) {
      const list = targeting.get(key) ?? []
      const winner = list.reduce<ConfigurationRecord | undefined>((w, c) => (!w || beats(c, w) ? c : w), undefined)
      const statuses: ConfigurationStatuses = {}
      for (const c of list) statuses[c.id] = { status: c === winner ? 'Applied' : 'Targeted' }
      const have = current.get(key) ?? {}
      const firstTime = winner !== undefined && have[winner.id]?.status !== 'Applied'
      if (winner) applied.set(winner.id, (applied.get(winner.id) ?? 0) + 1)
      if (!firstTime && JSON.stringify(have) === JSON.stringify(statuses)) continue
      const content = winner && (modules ? winner.content.moduleContent : winner.content.deviceContent)
      work.push({ key, patch: firstTime && content ? contentPatch(content) : null, statuses, winner: firstTime ? winner : undefined })
    }
    const failed = await eachLimited(work, WRITES_IN_FLIGHT, async (w) => {
      await this.shards.request('twin.configure', w.key, w.patch, w.statuses).catch((e: unknown) => {
        if (w.winner) applied.set(w.winner.id, (applied.get(w.winner.id) ?? 1) - 1)
        throw e
      })
      // an IoT Edge deployment writes each module's desired properties, on the modules the device has
      if (w.winner?.content.modulesContent) await this.deploy(w.key, w.winner.content.modulesContent)
    })
    if (failed > 0) this.log.warn('configuration not written to some twins; the next cycle retries', { twins: failed })
  }

  /** An IoT Edge deployment's module content, on the device's modules that exist (`$edgeAgent`, `$edgeHub`, …). */
  async deploy(deviceId: string, modulesContent: Json): Promise<void> {
    for (const [moduleId, c] of Object.entries(modulesContent)) {
      if (!this.modules.get(deviceId, moduleId)) continue
      await this.shards.requestForModule('twin.configure', deviceId, moduleId, (c as Json)['properties.desired'], null)
    }
  }
}
