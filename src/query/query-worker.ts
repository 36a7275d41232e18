// A query run in a piscina worker thread: reads the device and twin records straight from LMDB
// (its own handle on the hub's environment), builds each device's twin as the service sees it, and
// returns one page. Keeps scans off the edge's event loop and away from the shards.
import { openHubStore, type Durability, type HubStore } from '../store/hub-store.js'
import { identityJson, type DeviceRecord } from '../registry/device-registry.js'
import { twinJson } from '../rest/twin-routes.js'
import { moduleTwinJson } from '../rest/module-twin-routes.js'
import type { ModuleRecord } from '../registry/module-registry.js'
import { moduleKey, splitIdentityKey } from '../shard-protocol.js'
import { planConfigurations, type ConfigurationPlan, type ConfigurationPlanRequest } from './configuration-plan.js'
import { twinEtag, type TwinDoc } from '../../shards/twin-store.js'
import { QuerySyntaxError } from '../query-common/errors.js'
import type { Expr } from '../query-common/ast.js'
import { InvalidContinuationError, runQuery, type QueryPage } from './query-evaluator.js'
import { parseQuery } from './query-parser.js'
import { snapshotView, type PresenceSnapshot } from './presence-snapshot.js'
import { pickJobTargets, type JobTargets, type JobTargetsRequest } from './job-targets.js'

export interface QueryTask {
  dataDir: string
  durability: Durability
  query: string
  pageSize: number
  continuation?: string
  presence: PresenceSnapshot
  /** set instead of a query: one page of the automatic configurations' scan (configuration-plan.ts) */
  plan?: ConfigurationPlanRequest
  /** set instead of a query: one page of a scheduled job's targets (job-targets.ts) */
  targets?: JobTargetsRequest
}

/** Errors cross the thread as data: classes do not survive the structured clone. */
export type QueryPageOutcome = { ok: true; page: QueryPage } | { ok: false; kind: 'syntax' | 'continuation'; message: string }
export type QueryOutcome = QueryPageOutcome | { ok: true; plan: ConfigurationPlan } | { ok: true; targets: JobTargets }

const EMPTY_TIME = '0001-01-01T00:00:00Z'
/** A page of 1,000 large twins would be tens of MB for the edge to serialise: pages stop at this (x-ms-continuation goes on). */
const MAX_PAGE_BYTES = 4 * 1024 * 1024

function coreOf(doc: TwinDoc | undefined) {
  if (!doc) {
    const empty = () => ({ $metadata: { $lastUpdated: EMPTY_TIME }, $version: 1 })
    return { etag: twinEtag(1), version: 1, tags: {}, properties: { desired: empty(), reported: empty() } }
  }
  const core = { etag: twinEtag(doc.version), version: doc.version, tags: doc.tags, properties: { desired: doc.desired, reported: doc.reported } }
  return doc.configurations ? { ...core, configurations: doc.configurations } : core
}

/** Every device twin after `after` (a device id), in device id order, with its key, built as the scan reaches it. */
function* keyedTwins(s: HubStore, task: QueryTask, after?: string): Generator<{ key: string; twin: Record<string, unknown> }> {
  const presence = snapshotView(task.presence)
  const view = { toJson: (d: DeviceRecord) => identityJson(d, presence) }
  for (const { key, value } of s.devices.getRange(after === undefined ? {} : { start: after })) {
    if (key === after) continue
    const d = value as DeviceRecord
    yield { key: d.deviceId, twin: twinJson(view, d, coreOf(s.twins.get(d.deviceId) as TwinDoc | undefined)) }
  }
}

/** Every module twin after `after` (`d/m`), in device then module id order, kept in its device's shard under `d/m`. */
function* keyedModuleTwins(s: HubStore, task: QueryTask, after?: string): Generator<{ key: string; twin: Record<string, unknown> }> {
  const presence = snapshotView(task.presence)
  const start = after === undefined ? undefined : splitIdentityKey(after)
  for (const { value } of s.modules.getRange(start === undefined ? {} : { start: [start.deviceId, start.moduleId ?? ''] })) {
    const m = value as ModuleRecord
    const key = moduleKey(m.deviceId, m.moduleId)
    if (key === after) continue
    yield { key, twin: moduleTwinJson(m, coreOf(s.twins.get(key) as TwinDoc | undefined), presence) }
  }
}

function* twinsOnly(keyed: Iterable<{ twin: object }>): Generator<object> {
  for (const k of keyed) yield k.twin
}

/** `jobId = '…'` that a WHERE clause requires (alone or under AND), if any. */
function pinnedJobId(e: Expr | undefined): string | undefined {
  if (!e || e.kind !== 'binary') return undefined
  if (e.op === 'AND') return pinnedJobId(e.left) ?? pinnedJobId(e.right)
  if (e.op !== '=') return undefined
  const [path, value] = e.left.kind === 'path' ? [e.left, e.right] : [e.right, e.left]
  const isJobId = path.kind === 'path' && path.root === 'doc' && path.segments.length === 1 && path.segments[0] === 'jobId'
  return isJobId && value.kind === 'literal' && typeof value.value === 'string' ? value.value : undefined
}

/** The per-device job records a devices.jobs query reads: only one job's (a range of keys) when the query names it. */
function jobRecords(store: HubStore, where: Expr | undefined): Iterable<object> {
  const jobId = pinnedJobId(where)
  // keys are `{jobId}/{deviceId}`; "/" then "0" bound one job's
  const range = jobId === undefined ? {} : { start: `${jobId}/`, end: `${jobId}0` }
  return store.jobDevices.getRange(range).map(({ value }) => value as object)
}

export default async function runQueryTask(task: QueryTask): Promise<QueryOutcome> {
  // opened per task (the environment is shared with the hub's threads, so this is cheap) and closed
  // after, so a worker the pool ends holds nothing open; a fresh handle also sees the latest commits
  const store = openHubStore(task.dataDir, task.durability)
  try {
    return scan(store, task)
  } finally {
    await store.close()
  }
}

function scan(store: HubStore, task: QueryTask): QueryOutcome {
  store.root.resetReadTxn()
  if (task.plan) {
    const p = task.plan
    return { ok: true, plan: planConfigurations(p, p.modules ? keyedModuleTwins(store, task, p.after) : keyedTwins(store, task, p.after)) }
  }
  if (task.targets) return { ok: true, targets: pickJobTargets(task.targets, keyedTwins(store, task, task.targets.after)) }
  let query
  try {
    query = parseQuery(task.query)
  } catch (e) {
    if (e instanceof QuerySyntaxError) return { ok: false, kind: 'syntax', message: e.message }
    throw e
  }
  try {
    const docs = query.from === 'devices' ? twinsOnly(keyedTwins(store, task)) : query.from === 'devices.modules' ? twinsOnly(keyedModuleTwins(store, task)) : jobRecords(store, query.where)
    return { ok: true, page: runQuery(query, docs, { pageSize: task.pageSize, continuation: task.continuation, maxPageBytes: MAX_PAGE_BYTES }) }
  } catch (e) {
    if (e instanceof InvalidContinuationError) return { ok: false, kind: 'continuation', message: e.message }
    throw e
  }
}
