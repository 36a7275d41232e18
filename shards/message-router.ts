// A shard's compiled routing configuration: per source, one WasmRouteSet holding every enabled
// route, so a message is encoded into the VM once (loadMessage) and all routes are evaluated in one
// call (matchAll). Returns the endpoints a message goes to, each once, with the enrichments that
// endpoint adds. Without custom routes or enrichments telemetry never comes here (telemetryRouted).
import { parsePropertyBag } from '../src/mqtt/property-bag.js'
import {
  BUILT_IN_ENDPOINT, routingActive, type EnrichmentDef, type RouteSource, type RoutingConfig,
} from '../src/routing/routing-config.js'
import { bodyEncoding, canonicalSystemName, prepareMessage, type PreparedMessage } from '../src/routing/route-message.js'
import { defaultInterner } from '../src/routing/name-interner.js'
import type { Value } from '../src/query-common/values.js'
import type { Sender } from '../src/events/segment-codec.js'
import { moduleKey } from '../src/shard-protocol.js'
import { WasmRouteSet } from '../src/wasm/wasm-route-vm.js'
import { jsonDeeperThan } from '../src/json-depth.js'

/** The sender's twin as routing sees it: `{ tags, properties: { desired, reported } }`. */
export type RouteTwin = { tags: object; properties: { desired: object; reported: object } }

export interface Delivery {
  /** endpoint name in lower case (`events` for the built-in endpoint) */
  endpoint: string
  /** application properties the enrichments add for this endpoint, or null */
  enrichments: Record<string, string> | null
}

/** The wire value of `iothub-message-source` for each route source. */
export const MESSAGE_SOURCE: Record<RouteSource, string> = {
  DeviceMessages: 'Telemetry', TwinChangeEvents: 'twinChangeEvents',
  DeviceLifecycleEvents: 'deviceLifecycleEvents', DeviceConnectionStateEvents: 'deviceConnectionStateEvents',
}

interface SourceRoutes {
  set: WasmRouteSet
  /** endpoints of route k (lower case) */
  endpoints: string[][]
  usesTwin: boolean
  usesBody: boolean
}

const TWIN_PREFIX = '$twin.'

/** Azure's rule: a twin path that does not resolve is stamped as the literal text. */
function enrichmentValue(e: EnrichmentDef, hubName: string, twin: { readTwin(): RouteTwin | undefined }): string {
  const v = e.value
  if (v.toLowerCase() === '$iothubname') return hubName
  if (!v.toLowerCase().startsWith(TWIN_PREFIX)) return v
  const path = v.slice(TWIN_PREFIX.length).split('.')
  if (path[0] !== 'tags' && !(path[0] === 'properties' && (path[1] === 'desired' || path[1] === 'reported'))) return v
  let cur: unknown = twin.readTwin()
  for (const k of path) {
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur)) return v
    cur = (cur as Record<string, unknown>)[k]
  }
  if (cur === undefined || cur === null) return v
  return typeof cur === 'string' ? cur : JSON.stringify(cur)
}

export class MessageRouter {
  private readonly bySource = new Map<RouteSource, SourceRoutes>()
  private readonly fallback: string[] | null
  private readonly enrichmentsByEndpoint = new Map<string, EnrichmentDef[]>()
  private readonly matched: boolean[] = []
  private readonly targets: string[] = []
  private readonly out: Delivery[] = []
  /** deliveries to endpoints without enrichments: the same object every time */
  private readonly plain = new Map<string, Delivery>()
  /**
   * Which stamped system properties some program reads: the others are never set (the image leaves
   * unread names out anyway), and the ISO enqueued time alone costs as much as the VM.
   */
  private readonly needs: { deviceId: boolean; moduleId: boolean; authMethod: boolean; generationId: boolean; enqueuedTime: boolean; source: boolean }
  // the message being routed: fields rather than closures, which cost an allocation per message
  private twinOfDevice = ''
  private twinValue: RouteTwin | undefined
  private twinRead = false
  /** Whether telemetry needs evaluating at all; false keeps the plain path (everything to `events`). */
  readonly telemetryRouted: boolean

  constructor(config: RoutingConfig, private readonly hubName: string,
    private readonly twinOf: (deviceId: string) => RouteTwin | undefined = () => undefined) {
    for (const source of ['DeviceMessages', 'TwinChangeEvents', 'DeviceLifecycleEvents', 'DeviceConnectionStateEvents'] as RouteSource[]) {
      const routes = config.routes.filter((r) => r.isEnabled && r.source === source)
      if (routes.length === 0) continue
      this.bySource.set(source, {
        set: new WasmRouteSet(routes.map((r) => r.condition)),
        endpoints: routes.map((r) => r.endpointNames.map((n) => n.toLowerCase())),
        usesTwin: routes.some((r) => /\$twin/i.test(r.condition)),
        usesBody: routes.some((r) => /\$body/i.test(r.condition)),
      })
    }
    this.fallback = config.fallbackRoute.isEnabled ? config.fallbackRoute.endpointNames.map((n) => n.toLowerCase()) : null
    for (const e of config.enrichments) {
      for (const n of e.endpointNames) {
        const k = n.toLowerCase()
        this.enrichmentsByEndpoint.set(k, [...(this.enrichmentsByEndpoint.get(k) ?? []), e])
      }
    }
    const used = (name: string) => defaultInterner.lookup('s', name) !== 0
    this.needs = {
      deviceId: used('connectiondeviceid'), moduleId: used('connectionmoduleid'), authMethod: used('connectionauthmethod'), generationId: used('connectiondevicegenerationid'),
      enqueuedTime: used('enqueuedtime'), source: used('iothub-message-source'),
    }
    this.telemetryRouted = routingActive(config) && (this.bySource.has('DeviceMessages') || this.enrichmentsByEndpoint.size > 0
      || !config.fallbackRoute.isEnabled || this.fallback?.join() !== BUILT_IN_ENDPOINT)
  }

  /** Whether any enabled route takes events of this source (events are built only then). */
  wants(source: RouteSource): boolean {
    return this.bySource.has(source)
  }

  /**
   * The endpoints a message goes to, each once. `bag` and `extra` are as stored; the sender's twin is
   * read only when a condition or an enrichment needs it. The returned array is reused by the next call.
   */
  route(source: RouteSource, t: number, sender: Sender, bag: string, extra: Record<string, string> | null, body: Uint8Array): Delivery[] {
    const targets = this.targets
    targets.length = 0
    const routes = this.bySource.get(source)
    // a module's message reads its module's twin (kept under `{device}/{module}`)
    this.twinOfDevice = sender.moduleId ? moduleKey(sender.deviceId, sender.moduleId) : sender.deviceId
    this.twinRead = false
    this.twinValue = undefined
    if (routes) {
      routes.set.loadMessage(this.prepare(routes, source, t, sender, bag, extra, body))
      const matched = routes.set.matchAll(this.matched)
      for (let k = 0; k < routes.endpoints.length; k++) {
        if (!matched[k]) continue
        for (const ep of routes.endpoints[k]!) if (!targets.includes(ep)) targets.push(ep)
      }
    }
    // the fallback takes device messages no route matched (routing.md "Delivery semantics")
    if (targets.length === 0 && source === 'DeviceMessages' && this.fallback) for (const ep of this.fallback) targets.push(ep)
    const out = this.out
    out.length = 0
    for (const endpoint of targets) {
      const list = this.enrichmentsByEndpoint.get(endpoint)
      if (!list) {
        let d = this.plain.get(endpoint)
        if (!d) this.plain.set(endpoint, (d = { endpoint, enrichments: null }))
        out.push(d)
        continue
      }
      const enrichments: Record<string, string> = {}
      for (const e of list) enrichments[e.key] = enrichmentValue(e, this.hubName, this)
      out.push({ endpoint, enrichments })
    }
    return out
  }

  /** The sender's twin, read at most once per message. */
  readTwin(): RouteTwin | undefined {
    if (!this.twinRead) {
      this.twinValue = this.twinOf(this.twinOfDevice)
      this.twinRead = true
    }
    return this.twinValue
  }

  /** The message in routing's normal form (route-message.ts), built directly: no intermediate objects. */
  private prepare(routes: SourceRoutes, source: RouteSource, t: number, sender: Sender, bag: string, extra: Record<string, string> | null,
    body: Uint8Array): PreparedMessage {
    const sys = new Map<string, string>()
    const app = new Map<string, string>()
    if (bag.length > 0) {
      const { system, properties } = parsePropertyBag(bag)
      for (const k in system) sys.set(canonicalSystemName(k), system[k]!)
      for (const k in properties) app.set(k.toLowerCase(), properties[k]!)
    }
    if (extra) for (const k in extra) app.set(k.toLowerCase(), extra[k]!)
    const needs = this.needs
    if (needs.deviceId) sys.set('connectiondeviceid', sender.deviceId)
    if (needs.moduleId && sender.moduleId) sys.set('connectionmoduleid', sender.moduleId)
    if (needs.authMethod) sys.set('connectionauthmethod', sender.authMethod)
    if (needs.generationId) sys.set('connectiondevicegenerationid', sender.generationId)
    if (needs.enqueuedTime) sys.set('enqueuedtime', new Date(t).toISOString())
    if (needs.source) sys.set('iothub-message-source', MESSAGE_SOURCE[source])
    // the body is parsed only when a route reads it and the message says it is JSON
    let parsed: Value
    if (routes.usesBody) {
      const encoding = bodyEncoding(sys)
      if (encoding === 'utf-8') {
        const text = Buffer.from(body.buffer, body.byteOffset, body.byteLength)
        try { parsed = jsonDeeperThan(text) ? undefined : JSON.parse(text.toString('utf8')) as Value } catch { parsed = undefined }
      } else if (encoding !== undefined) {
        parsed = prepareMessage({ systemProperties: Object.fromEntries(sys), body }).body
      }
    }
    return { sys, app, body: parsed, twin: routes.usesTwin ? this.readTwin() as Value : undefined }
  }
}
