// The scan behind automatic configurations, run in the query worker: one pass over the device twins
// (or the module twins) evaluates every configuration's target condition and metrics query on each
// twin, picks the winner by rank, and returns only the twins whose `configurations` must change. A
// page ends after `maxChanges` changes or `maxScanned` twins, with where to resume: memory stays
// bounded by a page, not by the fleet, and a page holds the one query worker for a bounded time
// (queries wait behind it). Counts are summed by the caller across the pages of one cycle.
import type { Value } from '../query-common/values.js'
import { whereHolds } from './query-evaluator.js'
import { parseQuery } from './query-parser.js'
import type { Expr } from '../query-common/ast.js'

export interface PlanConfiguration {
  id: string
  /** the target condition ('' or '*': every twin) */
  condition: string
  /** higher wins a twin (priority, then creation time, ranked by the caller) */
  rank: number
}

export interface PlanMetric {
  configurationId: string
  name: string
  query: string
}

export interface ConfigurationPlanRequest {
  /** module twins (`devices.modules`) or device twins */
  modules: boolean
  configurations: PlanConfiguration[]
  metrics: PlanMetric[]
  /** resume after this twin (its key, `d` or `d/m`) */
  after?: string
  maxChanges: number
  /** a page also ends after this many twins, or after this long, so one task never holds the worker for long */
  maxScanned: number
  maxMs?: number
}

export type Statuses = Record<string, { status: 'Applied' | 'Targeted' }>

export interface PlannedChange {
  /** `d` or `d/m` */
  key: string
  statuses: Statuses
  /** the configuration whose content is written now (it wins this twin for the first time) */
  apply?: string
}

export interface ConfigurationPlan {
  changes: PlannedChange[]
  /** per configuration, over the twins this page scanned */
  targeted: Record<string, number>
  applied: Record<string, number>
  /** per `configurationId\nname` */
  metrics: Record<string, number>
  /** where the next page starts; undefined when the scan is done */
  resumeAfter?: string
}

/** A target condition as an expression; undefined for '' or '*' (every twin). */
export function conditionOf(condition: string): Expr | undefined {
  const c = condition.trim()
  if (c === '' || c === '*') return undefined
  return parseQuery(`SELECT * FROM devices WHERE ${c}`).where
}

const holds = whereHolds

/** The same configurations with the same statuses, in whatever order they were written. */
function sameStatuses(a: Statuses, b: Statuses): boolean {
  const keys = Object.keys(a)
  return keys.length === Object.keys(b).length && keys.every((k) => b[k]?.status === a[k]!.status)
}

/** One page of the plan over `twins` (key and twin JSON, in key order). */
export function planConfigurations(request: ConfigurationPlanRequest, twins: Iterable<{ key: string; twin: Record<string, unknown> }>): ConfigurationPlan {
  const configs = request.configurations.map((c) => ({ ...c, where: conditionOf(c.condition) }))
  const metrics: { key: string; where: Expr | undefined }[] = []
  for (const m of request.metrics) {
    try {
      const q = parseQuery(m.query)
      // a metric counts the twins of its own collection that its condition holds for
      if ((q.from === 'devices.modules') === request.modules) metrics.push({ key: `${m.configurationId}\n${m.name}`, where: q.where })
    } catch { /* checked when stored; a query that no longer parses counts nothing */ }
  }
  const plan: ConfigurationPlan = { changes: [], targeted: {}, applied: {}, metrics: {} }
  for (const c of configs) { plan.targeted[c.id] = 0; plan.applied[c.id] = 0 }
  for (const m of metrics) plan.metrics[m.key] = 0
  let scanned = 0
  const deadline = request.maxMs === undefined ? Infinity : performance.now() + request.maxMs
  for (const { key, twin } of twins) {
    const doc = twin as Value
    // the clock is read every 16 twins: heavy conditions end a page by time, light ones by count
    const last = ++scanned >= request.maxScanned || ((scanned & 15) === 0 && performance.now() > deadline)
    let winner: (typeof configs)[number] | undefined
    const targeting: typeof configs = []
    for (const c of configs) {
      if (!holds(c.where, doc)) continue
      targeting.push(c)
      plan.targeted[c.id]!++
      if (!winner || c.rank > winner.rank) winner = c
    }
    for (const m of metrics) if (holds(m.where, doc)) plan.metrics[m.key]!++
    const statuses: Statuses = {}
    for (const c of targeting) statuses[c.id] = { status: c === winner ? 'Applied' : 'Targeted' }
    if (winner) plan.applied[winner.id]!++
    const have = (twin.configurations ?? {}) as Statuses
    const firstTime = winner !== undefined && have[winner.id]?.status !== 'Applied'
    if (firstTime || !sameStatuses(have, statuses)) plan.changes.push(firstTime ? { key, statuses, apply: winner!.id } : { key, statuses })
    if (plan.changes.length >= request.maxChanges || last) { plan.resumeAfter = key; return plan }
  }
  return plan
}
