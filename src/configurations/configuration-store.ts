// Automatic device and module configurations (`/configurations/{id}`): what to write into the desired
// properties of the twins a target condition selects, with a priority among configurations that
// select the same twin, and metrics queries. Kept in LMDB `configurations`; a change commits before
// memory shows it. As in Azure, content is fixed once created: an update may change the target
// condition, priority, labels and metrics, not what is applied.
import type { Database } from 'lmdb'
import { HubError } from '../rest/hub-error.js'
import { checkEtag } from '../registry/device-registry.js'
import { SerializedChanges } from '../registry/serialized-changes.js'
import type { WriteHealth } from '../store/write-health.js'
import { checkContent as checkTwinSection, checkPropertyPath } from '../../shards/twin-rules.js'
import { contentPatch } from './content-patch.js'

/** Azure's limit for paid tiers (quotas-throttling.md): 100 configurations. */
export const MAX_CONFIGURATIONS = 100
/** Metrics queries of one configuration; Azure documents none, five is what its portal offers. */
export const MAX_METRICS = 5
const CONFIGURATION_ID = /^[a-z0-9\-:+%_#*?!(),=@;$']{1,128}$/

type Json = Record<string, unknown>

export interface ConfigurationContent {
  /** `properties.desired.{path}` → value, for device twins */
  deviceContent?: Json
  /** `properties.desired.{path}` → value, for module twins */
  moduleContent?: Json
  /** IoT Edge deployments: `{moduleId}` → `{ "properties.desired": {...} }` */
  modulesContent?: Json
}

export interface ConfigurationRecord {
  id: string
  schemaVersion: string
  labels: Record<string, string>
  content: ConfigurationContent
  targetCondition: string
  priority: number
  createdTimeUtc: string
  lastUpdatedTimeUtc: string
  etag: string
  /** name → query; results are counted each cycle (configuration-applier.ts) */
  metrics: { queries: Record<string, string> }
  /** the last cycle's counts, system and custom */
  results: { system: Record<string, number>; custom: Record<string, number> }
}

/** What a configuration targets: device twins (deviceContent, modulesContent) or module twins. */
export function targetsModules(c: ConfigurationRecord): boolean {
  return c.content.moduleContent !== undefined
}

/** The queries Azure reports in systemMetrics. */
export function systemQueries(c: ConfigurationRecord): Record<string, string> {
  const from = targetsModules(c) ? 'devices.modules' : 'devices'
  const where = c.targetCondition.trim() === '*' ? '' : ` WHERE ${c.targetCondition}`
  return {
    targetedCount: `SELECT deviceId FROM ${from}${where}`,
    appliedCount: `SELECT deviceId FROM ${from} WHERE configurations.[[${c.id}]].status = 'Applied'`,
  }
}

export function configurationJson(c: ConfigurationRecord): Json {
  return {
    id: c.id, schemaVersion: c.schemaVersion, labels: c.labels, content: c.content, targetCondition: c.targetCondition,
    createdTimeUtc: c.createdTimeUtc, lastUpdatedTimeUtc: c.lastUpdatedTimeUtc, priority: c.priority,
    systemMetrics: { results: c.results.system, queries: systemQueries(c) },
    metrics: { results: c.results.custom, queries: c.metrics.queries },
    etag: c.etag,
  }
}

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v)

/** Content paths are `properties.desired` or below it; each value is what that path is set to. */
function checkTwinContent(name: string, content: unknown): Json {
  if (!isObject(content)) throw new HubError(400004, `content.${name} must be an object of "properties.desired..." paths`)
  for (const path of Object.keys(content)) {
    if (path !== 'properties.desired' && !path.startsWith('properties.desired.')) {
      throw new HubError(400004, `content.${name} may only set desired properties: "${path}" does not start with "properties.desired"`)
    }
    if (path === 'properties.desired' && !isObject(content[path])) throw new HubError(400004, `content.${name}["properties.desired"] must be an object`)
    // the whole section is merged in as it is: its own names are checked with the rest of the patch,
    // but a __proto__ among them would vanish into the merge unchecked
    if (path === 'properties.desired' && Object.hasOwn(content[path] as Json, '__proto__')) throw new HubError(400004, `content.${name}["properties.desired"]: the property name __proto__ is not supported`)
    // the names below properties.desired become nested objects when applied: checked now (no __proto__, not too deep)
    checkPropertyPath('desired', path.split('.').slice(2))
  }
  return content
}

/** Content and testQueries conditions: a condition is a query's WHERE, bounded as a stored one is. */
export const MAX_CONDITION_CHARS = 4096

/**
 * A configuration's content, checked as the twins will take it: the paths name by name, then the
 * patch they make against the twin rules (names, values, depth), so a stored configuration cannot
 * fail on every twin of every cycle.
 */
export function checkContent(raw: unknown): ConfigurationContent {
  if (!isObject(raw)) throw new HubError(400004, 'content is required: deviceContent, moduleContent or modulesContent')
  const kinds = (['deviceContent', 'moduleContent', 'modulesContent'] as const).filter((k) => raw[k] !== undefined && raw[k] !== null)
  if (kinds.length !== 1) throw new HubError(400004, 'content must hold exactly one of deviceContent, moduleContent or modulesContent')
  const kind = kinds[0]!
  if (kind !== 'modulesContent') {
    const content = checkTwinContent(kind, raw[kind])
    checkTwinSection('desired', contentPatch(content), false)
    return { [kind]: content }
  }
  const modules = raw.modulesContent
  if (!isObject(modules)) throw new HubError(400004, 'content.modulesContent must be an object of module ids')
  for (const [moduleId, c] of Object.entries(modules)) {
    if (!isObject(c) || !isObject(c['properties.desired'])) throw new HubError(400004, `content.modulesContent.${moduleId} must be {"properties.desired": {...}}`)
    checkTwinSection('desired', c['properties.desired'], false)
  }
  return { modulesContent: modules }
}

function checkMetrics(raw: unknown): Record<string, string> {
  if (raw === undefined || raw === null) return {}
  const queries = isObject(raw) ? raw.queries ?? {} : undefined
  if (!isObject(queries)) throw new HubError(400004, 'metrics must be {"queries": {"name": "SELECT deviceId FROM devices WHERE ..."}}')
  const names = Object.keys(queries)
  if (names.length > MAX_METRICS) throw new HubError(400004, `at most ${MAX_METRICS} metrics queries`)
  for (const n of names) {
    if (typeof queries[n] !== 'string' || (queries[n] as string).length > MAX_CONDITION_CHARS) throw new HubError(400004, `metrics query ${n} must be a query string of at most ${MAX_CONDITION_CHARS} characters`)
  }
  return queries as Record<string, string>
}

function checkLabels(raw: unknown): Record<string, string> {
  if (raw === undefined || raw === null) return {}
  if (!isObject(raw) || Object.values(raw).some((v) => typeof v !== 'string')) throw new HubError(400004, 'labels must be an object of strings')
  return raw as Record<string, string>
}

export class ConfigurationStore {
  private readonly byId = new Map<string, ConfigurationRecord>()
  private etagCounter = 0
  private readonly changes = new SerializedChanges()
  /** a configuration was created or changed: the applier runs a cycle soon */
  onChange: () => void = () => {}

  constructor(private readonly db: Database, private readonly health?: WriteHealth,
    /** a stored configuration that breaks today's rules is not loaded (it would fail, or harm, every cycle) */
    refused: (id: string, reason: string) => void = () => {}) {
    for (const { value } of db.getRange()) {
      const c = value as ConfigurationRecord
      try {
        checkContent(c.content)
      } catch (e) {
        refused(c.id, (e as Error).message)
        continue
      }
      this.byId.set(c.id, c)
      this.etagCounter = Math.max(this.etagCounter, Number(Buffer.from(c.etag, 'base64').toString()) || 0)
    }
  }

  private async write(op: () => Promise<unknown>): Promise<void> {
    await (this.health ? this.health.run(op) : op())
  }

  all(): ConfigurationRecord[] { return [...this.byId.values()] }

  get(id: string): ConfigurationRecord {
    const c = this.byId.get(id)
    if (!c) throw new HubError(404301, `Configuration ${id} not found`)
    return c
  }

  /** PUT /configurations/{id}: create without If-Match, update with it (content fixed). */
  put(id: string, body: unknown, ifMatch: string | undefined, checkQuery: (query: string) => Promise<void>): Promise<ConfigurationRecord> {
    if (!CONFIGURATION_ID.test(id)) throw new HubError(400004, `configuration id ${JSON.stringify(id)} is invalid: 1-128 lower-case letters, digits or - : + % _ # * ? ! ( ) , = @ ; $ '`)
    if (!isObject(body)) throw new HubError(400004, 'the body must be a configuration object')
    if (body.id !== undefined && body.id !== id) throw new HubError(400004, `id in the body (${JSON.stringify(body.id)}) does not match the URL`)
    const priority = body.priority ?? 0
    if (typeof priority !== 'number' || !Number.isInteger(priority) || priority < 0) throw new HubError(400004, 'priority must be a non-negative integer')
    const targetCondition = body.targetCondition ?? ''
    if (typeof targetCondition !== 'string' || targetCondition.length > MAX_CONDITION_CHARS) throw new HubError(400004, `targetCondition must be a condition string of at most ${MAX_CONDITION_CHARS} characters`)
    const labels = checkLabels(body.labels)
    const metrics = checkMetrics(body.metrics)
    return this.changes.run(id, async () => {
      const existing = this.byId.get(id)
      let content: ConfigurationContent
      if (ifMatch === undefined) {
        if (existing) throw new HubError(409401, `Configuration with id ${id} already exists`)
        if (this.byId.size >= MAX_CONFIGURATIONS) throw new HubError(413101, `the hub already has ${MAX_CONFIGURATIONS} configurations, the most it may have`)
        content = checkContent(body.content)
      } else {
        if (!existing) throw new HubError(404301, `Configuration ${id} not found`)
        checkEtag(ifMatch, existing.etag)
        content = existing.content
        if (body.content !== undefined && body.content !== null && JSON.stringify(checkContent(body.content)) !== JSON.stringify(existing.content)) {
          throw new HubError(400004, `the content of configuration ${id} cannot be changed once created; create a new configuration`)
        }
      }
      const draft: ConfigurationRecord = {
        id, schemaVersion: typeof body.schemaVersion === 'string' ? body.schemaVersion : '1.0', labels, content, targetCondition, priority,
        createdTimeUtc: existing?.createdTimeUtc ?? new Date().toISOString(), lastUpdatedTimeUtc: new Date().toISOString(),
        etag: Buffer.from(String(++this.etagCounter)).toString('base64'),
        metrics: { queries: metrics },
        results: existing?.results ?? { system: { targetedCount: 0, appliedCount: 0 }, custom: {} },
      }
      // the queries must parse before they are stored (a bad one would fail every cycle)
      for (const q of [systemQueries(draft).targetedCount!, ...Object.values(metrics)]) await checkQuery(q)
      await this.write(() => this.db.put(id, draft))
      this.byId.set(id, draft)
      this.onChange()
      return draft
    })
  }

  delete(id: string, ifMatch: string | undefined): Promise<ConfigurationRecord> {
    return this.changes.run(id, async () => {
      const existing = this.get(id)
      if (ifMatch !== undefined) checkEtag(ifMatch, existing.etag)
      await this.write(() => this.db.remove(id))
      this.byId.delete(id)
      this.onChange()
      return existing
    })
  }

  /** A cycle's counts; kept in memory and stored (rewritten only when they change). */
  async setResults(id: string, results: ConfigurationRecord['results']): Promise<void> {
    await this.changes.run(id, async () => {
      const c = this.byId.get(id)
      if (!c || JSON.stringify(c.results) === JSON.stringify(results)) return
      const next = { ...c, results }
      await this.write(() => this.db.put(id, next))
      this.byId.set(id, next)
    })
  }
}
