// The hub's routing configuration (routing.md "Resource model"): routes, the fallback route, custom
// endpoints and enrichments, validated as a whole before it is stored or applied, so a stored
// configuration always compiles. Errors are HubErrors (400 ArgumentInvalid) naming what is wrong;
// a condition's syntax error carries its line and column.
import { compileCondition } from './condition-compiler.js'
import { QuerySyntaxError } from '../query-common/errors.js'
import { HubError } from '../rest/hub-error.js'

export const ROUTE_SOURCES = ['DeviceMessages', 'TwinChangeEvents', 'DeviceLifecycleEvents', 'DeviceConnectionStateEvents'] as const
export type RouteSource = typeof ROUTE_SOURCES[number]

export const MAX_ROUTES = 100
/** Azure allows 10 custom endpoints in all, whatever their types. */
export const MAX_CUSTOM_ENDPOINTS = 10
export const MAX_ENRICHMENTS = 10
export const BUILT_IN_ENDPOINT = 'events'
const RESERVED = new Set(['events', 'filenotifications', '$default'])
const NAME = /^[A-Za-z0-9._-]{1,64}$/
const ENRICHMENT_KEY = /^[A-Za-z0-9._-]{1,64}$/
export const DEFAULT_FILE_NAME_FORMAT = '{iothub}/{partition}/{YYYY}/{MM}/{DD}/{HH}/{mm}'
const FILE_TOKENS = ['{iothub}', '{partition}', '{YYYY}', '{MM}', '{DD}', '{HH}', '{mm}']

export interface RouteDef { name: string; source: RouteSource; condition: string; endpointNames: string[]; isEnabled: boolean }
export interface FallbackRouteDef { name: '$fallback'; source: 'DeviceMessages'; condition: 'true'; endpointNames: string[]; isEnabled: boolean }
/** Another partitioned log like the built-in endpoint, read at /messages/endpoints/{name}/... */
export interface LogEndpointDef { name: string }
/** `containerName`: the blob container of the hub's blob store its batches go to */
export type StorageEncoding = 'avro' | 'avroDeflate' | 'JSON'
export interface StorageEndpointDef { name: string; containerName: string; fileNameFormat: string; batchFrequencyInSeconds: number; maxChunkSizeInBytes: number; encoding: StorageEncoding }
const ENCODINGS: Record<string, StorageEncoding> = { avro: 'avro', avrodeflate: 'avroDeflate', json: 'JSON' }

const CONTAINER_NAME = /^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$/

/** An endpoint's container when none is named: its name in Azure's container alphabet (lowercase, single hyphens, 3-63). */
export function defaultContainerName(endpointName: string): string {
  let c = endpointName.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '')
  if (c.length < 3) c = c ? `${c}-routed` : 'routed'
  return c.slice(0, 63).replace(/-+$/, '')
}
export interface WebhookEndpointDef { name: string; url: string; maxDeliveryAttempts: number; timeoutInSeconds: number }
export interface EnrichmentDef { key: string; value: string; endpointNames: string[] }

export interface RoutingConfig {
  routes: RouteDef[]
  fallbackRoute: FallbackRouteDef
  endpoints: { logs: LogEndpointDef[]; storageContainers: StorageEndpointDef[]; webhooks: WebhookEndpointDef[] }
  enrichments: EnrichmentDef[]
}

export type EndpointKind = 'log' | 'storage' | 'webhook'

export function defaultRoutingConfig(): RoutingConfig {
  return {
    routes: [],
    fallbackRoute: { name: '$fallback', source: 'DeviceMessages', condition: 'true', endpointNames: [BUILT_IN_ENDPOINT], isEnabled: true },
    endpoints: { logs: [], storageContainers: [], webhooks: [] },
    enrichments: [],
  }
}

const bad = (message: string) => new HubError(400004, message)
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

function str(v: unknown, what: string, fallback?: string): string {
  if (v === undefined && fallback !== undefined) return fallback
  if (typeof v !== 'string') throw bad(`${what} must be a string`)
  return v
}

function int(v: unknown, what: string, fallback: number, min: number, max: number): number {
  if (v === undefined || v === null) return fallback
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw bad(`${what} must be an integer ${min}..${max}`)
  return v
}

function name(v: unknown, what: string): string {
  const n = str(v, what)
  // a storage endpoint's name is a directory: `.` and `..` would write outside the endpoints' folder
  if (!NAME.test(n) || /^\.+$/.test(n)) throw bad(`${what} ${JSON.stringify(n)} is invalid: 1-64 letters, digits, '.', '_' or '-', not only dots`)
  return n
}

function list<T>(v: unknown, what: string): T[] {
  if (v === undefined || v === null) return []
  if (!Array.isArray(v)) throw bad(`${what} must be an array`)
  return v as T[]
}

/** A route condition's syntax error as a 400 with its position. */
export function checkCondition(condition: string, what: string): void {
  try {
    compileCondition(condition)
  } catch (e) {
    if (e instanceof QuerySyntaxError) throw bad(`${what}: ${e.message} (offset ${e.offset})`)
    throw bad(`${what}: ${(e as Error).message}`)
  }
}

function endpointOf(raw: unknown, kind: EndpointKind): LogEndpointDef | StorageEndpointDef | WebhookEndpointDef {
  if (!isObject(raw)) throw bad('an endpoint must be an object')
  const n = name(raw.name, 'endpoint name')
  if (RESERVED.has(n.toLowerCase())) throw bad(`endpoint name ${n} is reserved`)
  if (kind === 'log') return { name: n }
  if (kind === 'storage') {
    const fileNameFormat = str(raw.fileNameFormat, 'fileNameFormat', DEFAULT_FILE_NAME_FORMAT)
    for (const t of FILE_TOKENS) if (!fileNameFormat.includes(t)) throw bad(`fileNameFormat must contain every one of ${FILE_TOKENS.join(' ')} (missing ${t})`)
    if (fileNameFormat.split('/').some((part) => part === '..' || part === '.') || fileNameFormat.startsWith('/')) throw bad('fileNameFormat must be a relative path without . or .. segments')
    // Azure's default is Avro
    const encoding = ENCODINGS[str(raw.encoding, 'encoding', 'avro').toLowerCase()]
    if (!encoding) throw bad('encoding must be avro, avroDeflate or JSON')
    const containerName = raw.containerName === undefined ? defaultContainerName(n) : str(raw.containerName, 'containerName')
    if (!CONTAINER_NAME.test(containerName)) throw bad('containerName must be 3-63 lowercase letters, digits and single hyphens')
    return {
      name: n, containerName, fileNameFormat, encoding,
      // choice: shorter windows and smaller chunks than Azure allows (60 s, 10 MB), for local use and tests
      batchFrequencyInSeconds: int(raw.batchFrequencyInSeconds, 'batchFrequencyInSeconds', 300, 1, 720),
      maxChunkSizeInBytes: int(raw.maxChunkSizeInBytes, 'maxChunkSizeInBytes', 314_572_800, 1024, 524_288_000),
    }
  }
  const url = str(raw.url, 'url')
  let parsed: URL
  try { parsed = new URL(url) } catch { throw bad('url must be an absolute http or https URL') }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw bad('url must be an absolute http or https URL')
  return {
    name: n, url,
    maxDeliveryAttempts: int(raw.maxDeliveryAttempts, 'maxDeliveryAttempts', 5, 1, 20),
    timeoutInSeconds: int(raw.timeoutInSeconds, 'timeoutInSeconds', 10, 1, 60),
  }
}

/** Checks and normalises a whole configuration (the stored and the applied form). */
export function validateRoutingConfig(raw: unknown): RoutingConfig {
  if (!isObject(raw)) throw bad('the routing configuration must be an object')
  const eps = raw.endpoints === undefined ? {} : raw.endpoints
  if (!isObject(eps)) throw bad('endpoints must be an object')
  const endpoints: RoutingConfig['endpoints'] = {
    logs: list(eps.logs, 'endpoints.logs').map((e) => endpointOf(e, 'log')),
    storageContainers: list(eps.storageContainers, 'endpoints.storageContainers').map((e) => endpointOf(e, 'storage') as StorageEndpointDef),
    webhooks: list(eps.webhooks, 'endpoints.webhooks').map((e) => endpointOf(e, 'webhook') as WebhookEndpointDef),
  }
  const custom = endpoints.logs.length + endpoints.storageContainers.length + endpoints.webhooks.length
  if (custom > MAX_CUSTOM_ENDPOINTS) throw bad(`at most ${MAX_CUSTOM_ENDPOINTS} custom endpoints in all (got ${custom})`)
  // names are unique across all endpoint types, case-insensitively
  const known = new Set<string>([BUILT_IN_ENDPOINT])
  for (const e of [...endpoints.logs, ...endpoints.storageContainers, ...endpoints.webhooks]) {
    if (known.has(e.name.toLowerCase())) throw bad(`endpoint name ${e.name} is used twice`)
    known.add(e.name.toLowerCase())
  }
  const checkTargets = (names: unknown, what: string): string[] => {
    const l = list<unknown>(names, `${what}.endpointNames`).map((n) => str(n, `${what}.endpointNames[]`))
    if (l.length === 0) throw bad(`${what} needs an endpoint in endpointNames`)
    for (const n of l) if (!known.has(n.toLowerCase())) throw bad(`${what}: endpoint ${n} does not exist`)
    return l
  }
  const routesRaw = list<unknown>(raw.routes, 'routes')
  if (routesRaw.length > MAX_ROUTES) throw bad(`at most ${MAX_ROUTES} routes (got ${routesRaw.length})`)
  const routeNames = new Set<string>()
  const routes = routesRaw.map((r): RouteDef => {
    if (!isObject(r)) throw bad('a route must be an object')
    const n = name(r.name, 'route name')
    if (routeNames.has(n.toLowerCase())) throw bad(`route name ${n} is used twice`)
    routeNames.add(n.toLowerCase())
    const source = str(r.source, `route ${n}: source`, 'DeviceMessages')
    if (!(ROUTE_SOURCES as readonly string[]).includes(source)) throw bad(`route ${n}: source must be one of ${ROUTE_SOURCES.join(', ')}`)
    const condition = str(r.condition, `route ${n}: condition`, 'true')
    checkCondition(condition, `route ${n}: condition`)
    const isEnabled = r.isEnabled === undefined ? true : r.isEnabled
    if (typeof isEnabled !== 'boolean') throw bad(`route ${n}: isEnabled must be a boolean`)
    return { name: n, source: source as RouteSource, condition, endpointNames: checkTargets(r.endpointNames, `route ${n}`), isEnabled }
  })
  const fb = raw.fallbackRoute === undefined ? {} : raw.fallbackRoute
  if (!isObject(fb)) throw bad('fallbackRoute must be an object')
  const fbEnabled = fb.isEnabled === undefined ? true : fb.isEnabled
  if (typeof fbEnabled !== 'boolean') throw bad('fallbackRoute.isEnabled must be a boolean')
  const fallbackRoute: FallbackRouteDef = {
    name: '$fallback', source: 'DeviceMessages', condition: 'true', isEnabled: fbEnabled,
    endpointNames: fb.endpointNames === undefined ? [BUILT_IN_ENDPOINT] : checkTargets(fb.endpointNames, 'fallbackRoute'),
  }
  const enrichmentsRaw = list<unknown>(raw.enrichments, 'enrichments')
  if (enrichmentsRaw.length > MAX_ENRICHMENTS) throw bad(`at most ${MAX_ENRICHMENTS} enrichments (got ${enrichmentsRaw.length})`)
  const keys = new Set<string>()
  const enrichments = enrichmentsRaw.map((e): EnrichmentDef => {
    if (!isObject(e)) throw bad('an enrichment must be an object')
    const key = str(e.key, 'enrichment key')
    if (!ENRICHMENT_KEY.test(key)) throw bad(`enrichment key ${JSON.stringify(key)} is invalid: 1-64 letters, digits, '.', '_' or '-'`)
    if (keys.has(key.toLowerCase())) throw bad(`enrichment key ${key} is used twice`)
    keys.add(key.toLowerCase())
    const value = str(e.value, `enrichment ${key}: value`)
    if (value.length === 0 || value.length > 4096) throw bad(`enrichment ${key}: value must be 1..4096 characters`)
    return { key, value, endpointNames: checkTargets(e.endpointNames, `enrichment ${key}`) }
  })
  return { routes, fallbackRoute, endpoints, enrichments }
}

/** Where an endpoint is defined, or undefined (the built-in `events` is not listed). */
export function findEndpoint(config: RoutingConfig, n: string): { kind: EndpointKind; def: LogEndpointDef | StorageEndpointDef | WebhookEndpointDef } | undefined {
  const lower = n.toLowerCase()
  const l = config.endpoints.logs.find((e) => e.name.toLowerCase() === lower)
  if (l) return { kind: 'log', def: l }
  const s = config.endpoints.storageContainers.find((e) => e.name.toLowerCase() === lower)
  if (s) return { kind: 'storage', def: s }
  const w = config.endpoints.webhooks.find((e) => e.name.toLowerCase() === lower)
  return w ? { kind: 'webhook', def: w } : undefined
}

/** Whether the hub routes at all: without custom routes telemetry takes the plain path to `events`. */
export function routingActive(config: RoutingConfig): boolean {
  const fb = config.fallbackRoute
  const plainFallback = fb.endpointNames.length === 1 && fb.endpointNames[0]!.toLowerCase() === BUILT_IN_ENDPOINT
  return config.routes.length > 0 || !fb.isEnabled || !plainFallback || config.enrichments.length > 0
}
