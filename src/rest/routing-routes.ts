// Routing management REST API (Hyperhub's own; Azure manages routing through ARM): the whole
// configuration at /routing, and each route, endpoint and enrichment on its own. All of it is
// control plane: only the owner policy may read it (webhook URLs may hold keys) or change it (a
// route can copy or black-hole all telemetry). Every change is validated against the whole configuration (limits, names,
// conditions, endpoints in use) and answered once every shard applies it.
import type { RoutingService } from '../routing/routing-service.js'
import type { RoutingConfig } from '../routing/routing-config.js'
import { HubError } from './hub-error.js'
import type { RestRequest, Route } from './http-server.js'

const ENDPOINT_TYPES = ['logs', 'storageContainers', 'webhooks'] as const
type EndpointType = typeof ENDPOINT_TYPES[number]

const same = (a: string, b: string) => a.toLowerCase() === b.toLowerCase()

function object(req: RestRequest): Record<string, unknown> {
  const body = req.json()
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HubError(400004, 'the body must be a JSON object')
  return body as Record<string, unknown>
}

function endpointType(raw: string): EndpointType {
  const t = ENDPOINT_TYPES.find((x) => same(x, raw))
  if (!t) throw new HubError(404000, `endpoint type ${raw} does not exist (${ENDPOINT_TYPES.join(', ')})`)
  return t
}

/** Replaces or adds the item named `name` in `list` (the body's name, if any, must agree). */
function upsert<T extends object>(list: T[], key: keyof T, name: string, body: Record<string, unknown>): void {
  if (body[key as string] !== undefined && body[key as string] !== name) throw new HubError(400004, `${String(key)} in the body does not match the URL`)
  const item = { ...body, [key]: name } as T
  const i = list.findIndex((x) => same(String(x[key]), name))
  if (i >= 0) list[i] = item
  else list.push(item)
}

function remove<T extends object>(list: T[], key: keyof T, name: string, what: string): void {
  const i = list.findIndex((x) => same(String(x[key]), name))
  if (i < 0) throw new HubError(404000, `${what} ${name} does not exist`)
  list.splice(i, 1)
}

function find<T extends object>(list: T[], key: keyof T, name: string, what: string): T {
  const item = list.find((x) => same(String(x[key]), name))
  if (!item) throw new HubError(404000, `${what} ${name} does not exist`)
  return item
}

export function routingRoutes(routing: RoutingService): Route[] {
  const ok = (body: unknown) => ({ status: 200, body })
  const change = async (f: (d: RoutingConfig) => unknown, answer: (c: RoutingConfig) => unknown) => ok(answer(await routing.update(f)))
  return [
    // endpoints can hold credentials (a webhook URL with a key): reading them needs the right to change them
    { method: 'get', pattern: /^\/routing\/?$/, right: 'ControlPlane', handle: () => ok(routing.current) },
    {
      method: 'put', pattern: /^\/routing\/?$/, right: 'ControlPlane',
      handle: (req) => {
        const body = object(req)
        return change((d) => Object.assign(d, body), (c) => c)
      },
    },
    { method: 'get', pattern: /^\/routing\/routes\/?$/, right: 'ControlPlane', handle: () => ok(routing.current.routes) },
    {
      method: 'get', pattern: /^\/routing\/routes\/([^/]+)\/?$/, right: 'ControlPlane',
      handle: (req) => ok(find(routing.current.routes, 'name', req.params[0]!, 'route')),
    },
    {
      method: 'put', pattern: /^\/routing\/routes\/([^/]+)\/?$/, right: 'ControlPlane',
      handle: (req) => {
        const body = object(req)
        const name = req.params[0]!
        return change((d) => upsert(d.routes, 'name', name, body), (c) => find(c.routes, 'name', name, 'route'))
      },
    },
    {
      method: 'delete', pattern: /^\/routing\/routes\/([^/]+)\/?$/, right: 'ControlPlane',
      handle: async (req) => {
        await routing.update((d) => remove(d.routes, 'name', req.params[0]!, 'route'))
        return { status: 204 }
      },
    },
    { method: 'get', pattern: /^\/routing\/fallbackRoute\/?$/i, right: 'ControlPlane', handle: () => ok(routing.current.fallbackRoute) },
    {
      method: 'put', pattern: /^\/routing\/fallbackRoute\/?$/i, right: 'ControlPlane',
      handle: (req) => {
        const body = object(req)
        return change((d) => { d.fallbackRoute = { ...d.fallbackRoute, ...body } as RoutingConfig['fallbackRoute'] }, (c) => c.fallbackRoute)
      },
    },
    { method: 'get', pattern: /^\/routing\/endpoints\/?$/, right: 'ControlPlane', handle: () => ok(routing.current.endpoints) },
    {
      method: 'get', pattern: /^\/routing\/endpoints\/([^/]+)\/([^/]+)\/?$/, right: 'ControlPlane',
      handle: (req) => ok(find(routing.current.endpoints[endpointType(req.params[0]!)] as { name: string }[], 'name', req.params[1]!, 'endpoint')),
    },
    {
      method: 'put', pattern: /^\/routing\/endpoints\/([^/]+)\/([^/]+)\/?$/, right: 'ControlPlane',
      handle: (req) => {
        const type = endpointType(req.params[0]!)
        const body = object(req)
        const name = req.params[1]!
        return change((d) => upsert(d.endpoints[type] as { name: string }[], 'name', name, body),
          (c) => find(c.endpoints[type] as { name: string }[], 'name', name, 'endpoint'))
      },
    },
    {
      method: 'delete', pattern: /^\/routing\/endpoints\/([^/]+)\/([^/]+)\/?$/, right: 'ControlPlane',
      handle: async (req) => {
        const type = endpointType(req.params[0]!)
        const name = req.params[1]!
        await routing.update((d) => {
          // a route or enrichment that still names it would lose its target: say which
          const users = [...d.routes.map((r) => ({ what: `route ${r.name}`, names: r.endpointNames })), { what: 'the fallback route', names: d.fallbackRoute.endpointNames },
            ...d.enrichments.map((e) => ({ what: `enrichment ${e.key}`, names: e.endpointNames }))].filter((u) => u.names.some((n) => same(n, name)))
          if (users.length > 0) throw new HubError(400004, `endpoint ${name} is still used by ${users.map((u) => u.what).join(', ')}; remove it from them first`)
          remove(d.endpoints[type] as { name: string }[], 'name', name, 'endpoint')
        })
        return { status: 204 }
      },
    },
    { method: 'get', pattern: /^\/routing\/enrichments\/?$/, right: 'ControlPlane', handle: () => ok(routing.current.enrichments) },
    {
      method: 'get', pattern: /^\/routing\/enrichments\/([^/]+)\/?$/, right: 'ControlPlane',
      handle: (req) => ok(find(routing.current.enrichments, 'key', req.params[0]!, 'enrichment')),
    },
    {
      method: 'put', pattern: /^\/routing\/enrichments\/([^/]+)\/?$/, right: 'ControlPlane',
      handle: (req) => {
        const body = object(req)
        const key = req.params[0]!
        return change((d) => upsert(d.enrichments, 'key', key, body), (c) => find(c.enrichments, 'key', key, 'enrichment'))
      },
    },
    {
      method: 'delete', pattern: /^\/routing\/enrichments\/([^/]+)\/?$/, right: 'ControlPlane',
      handle: async (req) => {
        await routing.update((d) => remove(d.enrichments, 'key', req.params[0]!, 'enrichment'))
        return { status: 204 }
      },
    },
  ]
}
