// Automatic device and module configurations over REST (sdk-compat.md "Configurations"):
// PUT/GET/DELETE /configurations/{id}, GET /configurations, POST /configurations/testQueries, and
// POST /devices/{id}/applyConfigurationContent (an IoT Edge deployment applied to one device now).
import type { ConfigurationApplier } from '../configurations/configuration-applier.js'
import { configurationJson, MAX_CONDITION_CHARS, MAX_CONFIGURATIONS, type ConfigurationStore } from '../configurations/configuration-store.js'
import { parseQuery } from '../query/query-parser.js'
import type { DeviceRegistry } from '../registry/device-registry.js'
import { HubError } from './hub-error.js'
import type { Route } from './http-server.js'
import type { RouteLimits } from './route-limits.js'

const CONFIGURATION = /^\/configurations\/([^/]+)\/?$/
const LIMITS: RouteLimits = { throttle: 'configurations', standardOnly: 'automatic device configurations' }

/** The parser's complaint about a query, or '' (run on this thread: parsing is bounded by the query's 4 KB). */
function queryError(query: string): string {
  if (query.length > MAX_CONDITION_CHARS + 64) return `the query is longer than ${MAX_CONDITION_CHARS} characters`
  try {
    parseQuery(query)
    return ''
  } catch (e) {
    return (e as Error).message
  }
}

/** Refuses (400004) a configuration's query that does not parse: PUT and import jobs check them before storing. */
export async function checkConfigurationQuery(query: string): Promise<void> {
  const error = queryError(query)
  if (error) throw new HubError(400004, `The query is invalid: ${query}. ${error}`)
}

export function configurationRoutes(store: ConfigurationStore, applier: ConfigurationApplier, registry: DeviceRegistry): Route[] {
  return [
    {
      method: 'put', pattern: CONFIGURATION, right: 'RegistryWrite', role: 'configurations/write', limits: LIMITS,
      async handle(req) {
        const c = await store.put(req.params[0]!, req.json(), req.headers['if-match'] || undefined, checkConfigurationQuery)
        return { status: 200, body: configurationJson(c), headers: { ETag: `"${c.etag}"` } }
      },
    },
    {
      method: 'get', pattern: CONFIGURATION, right: 'RegistryRead', role: 'configurations/read', limits: LIMITS,
      handle(req) {
        const c = store.get(req.params[0]!)
        return { status: 200, body: configurationJson(c), headers: { ETag: `"${c.etag}"` } }
      },
    },
    {
      method: 'delete', pattern: CONFIGURATION, right: 'RegistryWrite', role: 'configurations/delete', limits: LIMITS,
      async handle(req) {
        await store.delete(req.params[0]!, req.headers['if-match'] || undefined)
        return { status: 204 }
      },
    },
    {
      method: 'get', pattern: /^\/configurations\/?$/, right: 'RegistryRead', role: 'configurations/read', limits: LIMITS,
      handle(req) {
        const top = req.query.get('top')
        const n = top === null || top === '' ? MAX_CONFIGURATIONS : Number(top)
        if (!Number.isInteger(n) || n < 1) throw new HubError(400004, 'top must be a positive integer')
        return { status: 200, body: store.all().slice(0, n).map(configurationJson) }
      },
    },
    {
      method: 'post', pattern: /^\/configurations\/testQueries\/?$/, right: 'RegistryRead', role: 'configurations/testQueries/action', limits: LIMITS,
      handle(req) {
        const b = req.json<{ targetCondition?: unknown; customMetricQueries?: unknown }>()
        if (typeof b !== 'object' || b === null) throw new HubError(400004, 'the body must be {"targetCondition": "...", "customMetricQueries": {...}}')
        const target = typeof b.targetCondition === 'string' && b.targetCondition.trim() !== '' && b.targetCondition.trim() !== '*'
          ? queryError(`SELECT * FROM devices WHERE ${b.targetCondition}`) : ''
        const metrics: Record<string, string> = {}
        const custom = (typeof b.customMetricQueries === 'object' && b.customMetricQueries !== null ? b.customMetricQueries : {}) as Record<string, unknown>
        for (const [name, q] of Object.entries(custom)) metrics[name] = typeof q === 'string' ? queryError(q) : 'the query must be a string'
        return { status: 200, body: { targetConditionError: target, customMetricQueryErrors: metrics } }
      },
    },
    {
      method: 'post', pattern: /^\/devices\/([^/]+)\/applyConfigurationContent\/?$/, right: 'RegistryWrite', role: 'configurations/applyToEdgeDevice/action', limits: LIMITS,
      async handle(req) {
        const d = registry.get(req.params[0]!)
        if (!d) throw new HubError(404001, `Device ${req.params[0]} not registered`)
        if (!d.capabilities.iotEdge) throw new HubError(400004, `device ${d.deviceId} is not an IoT Edge device: only edge devices take a deployment's modulesContent`)
        const b = req.json<{ modulesContent?: unknown }>()
        if (typeof b !== 'object' || b === null || typeof b.modulesContent !== 'object' || b.modulesContent === null || Array.isArray(b.modulesContent)) {
          throw new HubError(400004, 'the body must be {"modulesContent": {"$edgeAgent": {"properties.desired": {...}}, ...}}')
        }
        for (const [m, c] of Object.entries(b.modulesContent as Record<string, unknown>)) {
          const desired = (c as Record<string, unknown> | null)?.['properties.desired']
          if (typeof desired !== 'object' || desired === null || Array.isArray(desired)) throw new HubError(400004, `modulesContent.${m} must be {"properties.desired": {...}}`)
        }
        await applier.deploy(d.deviceId, b.modulesContent as Record<string, unknown>)
        return { status: 200, body: {} }
      },
    },
  ]
}
