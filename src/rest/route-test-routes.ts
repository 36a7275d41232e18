// ARM's route test APIs on the hub's routing REST API: `POST /routing/routes/$testnew` tries one
// route, `POST /routing/routes/$testall` every enabled route of a source, against a sample message
// and twin. Nothing is routed. Control plane like the rest of /routing: a route's condition is
// hub configuration, and its results tell what the configured routes look at.
import { matchingRoutes, testCondition } from '../routing/route-tester.js'
import { ROUTE_SOURCES, type RouteSource } from '../routing/routing-config.js'
import type { RouteMessage } from '../routing/route-message.js'
import type { RoutingService } from '../routing/routing-service.js'
import { HubError } from './hub-error.js'
import type { RestRequest, Route } from './http-server.js'

const bad = (message: string) => new HubError(400004, message)
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

function object(v: unknown, what: string): Record<string, unknown> {
  if (v === undefined || v === null) return {}
  if (!isObject(v)) throw bad(`${what} must be a JSON object`)
  return v
}

function properties(v: unknown, what: string): Record<string, string> {
  const o = object(v, what)
  for (const [k, value] of Object.entries(o)) if (typeof value !== 'string') throw bad(`${what}.${k} must be a string`)
  return o as Record<string, string>
}

function source(v: unknown, what: string): RouteSource {
  if (v === undefined || v === null) return 'DeviceMessages'
  const s = ROUTE_SOURCES.find((x) => typeof v === 'string' && x.toLowerCase() === v.toLowerCase())
  if (!s) throw bad(`${what} must be one of ${ROUTE_SOURCES.join(', ')}`)
  return s
}

/** ARM's RoutingMessage (`body` a string, both property bags of strings) and RoutingTwin, as routing reads them. */
function sample(body: Record<string, unknown>): RouteMessage {
  const m = object(body.message, 'message')
  if (m.body !== undefined && m.body !== null && typeof m.body !== 'string') throw bad('message.body must be a string')
  const twin = object(body.twin, 'twin')
  const props = object(twin.properties, 'twin.properties')
  return {
    ...(typeof m.body === 'string' ? { body: m.body } : {}),
    appProperties: properties(m.appProperties, 'message.appProperties'),
    systemProperties: properties(m.systemProperties, 'message.systemProperties'),
    twin: { tags: object(twin.tags, 'twin.tags'), properties: { desired: object(props.desired, 'twin.properties.desired'), reported: object(props.reported, 'twin.properties.reported') } },
  }
}

const TEST_NEW = /^\/routing\/routes\/(?:\$|%24)testnew\/?$/i
const TEST_ALL = /^\/routing\/routes\/(?:\$|%24)testall\/?$/i

export function routeTestRoutes(routing: Pick<RoutingService, 'current'>): Route[] {
  const input = (req: RestRequest) => object(req.json(), 'the body')
  return [
    {
      method: 'post', pattern: TEST_NEW, right: 'ControlPlane',
      handle(req) {
        const body = input(req)
        if (!isObject(body.route)) throw bad('route is required: {"name", "source", "condition", "endpointNames", "isEnabled"}')
        source(body.route.source, 'route.source')
        const condition = body.route.condition ?? 'true'
        if (typeof condition !== 'string') throw bad('route.condition must be a string')
        return { status: 200, body: testCondition(condition, sample(body)) }
      },
    },
    {
      method: 'post', pattern: TEST_ALL, right: 'ControlPlane',
      handle(req) {
        const body = input(req)
        const from = source(body.routingSource, 'routingSource')
        const routes = routing.current.routes.filter((r) => r.isEnabled && r.source === from)
        return { status: 200, body: { routes: matchingRoutes(routes, sample(body)).map((r) => ({ properties: r })) } }
      },
    },
  ]
}
