// Identity registry REST routes (api-version 2021-04-12).
import type { DeviceRegistry } from '../registry/device-registry.js'
import type { DeviceEdge } from '../edge/device-edge.js'
import { HubError } from './hub-error.js'
import type { Route, RestRequest } from './http-server.js'
import type { BulkRegistry } from '../registry/bulk-registry.js'

/** A bulk call costs one registry operation per device it names (quotas-throttling.md); a body that is not a list costs one and is refused by the handler. */
function bulkCost(req: RestRequest): number {
  try {
    const body = req.json()
    return Array.isArray(body) ? Math.max(1, Math.min(body.length, 100)) : 1
  } catch {
    return 1
  }
}

const DEVICE = /^\/devices\/([^/]+)\/?$/

export function registryRoutes(registry: DeviceRegistry, edge: DeviceEdge, bulk: BulkRegistry): Route[] {
  const deviceReply = (d: Parameters<DeviceRegistry['toJson']>[0]) => ({ status: 200, body: registry.toJson(d), headers: { ETag: `"${d.etag}"` } })
  return [
    {
      method: 'get', pattern: /^\/devices\/?$/, right: 'RegistryRead', role: 'devices/read', limits: { throttle: 'registry' }, 
      handle(req) {
        const top = req.query.get('top') === null ? 1000 : Number(req.query.get('top'))
        if (!Number.isInteger(top) || top < 1 || top > 1000) throw new HubError(400004, 'top must be an integer 1..1000')
        return { status: 200, body: registry.list(top).map((d) => registry.toJson(d)) }
      },
    },
    {
      method: 'get', pattern: DEVICE, right: 'RegistryRead', role: 'devices/read', limits: { throttle: 'registry' }, 
      handle(req) {
        const d = registry.get(req.params[0]!)
        if (!d) throw new HubError(404001, `Device ${req.params[0]} not registered`)
        return deviceReply(d)
      },
    },
    {
      method: 'put', pattern: DEVICE, right: 'RegistryWrite', role: 'devices/write', limits: { throttle: 'registry' }, 
      async handle(req) {
        return deviceReply(await registry.put(req.params[0]!, req.json(), req.headers['if-match']))
      },
    },
    {
      method: 'delete', pattern: DEVICE, right: 'RegistryWrite', role: 'devices/delete', limits: { throttle: 'registry' }, 
      async handle(req) {
        await registry.delete(req.params[0]!, req.headers['if-match'])
        return { status: 204 }
      },
    },
    {
      // bulk create, update and delete: Azure asks a role for both devices/write and devices/delete
      method: 'post', pattern: /^\/devices\/?$/, right: 'RegistryWrite', role: ['devices/write', 'devices/delete'],
      limits: { throttle: 'registry', cost: (req) => bulkCost(req) },
      async handle(req) {
        return { status: 200, body: await bulk.apply(req.json()) }
      },
    },
    {
      method: 'get', pattern: /^\/statistics\/devices\/?$/, right: 'RegistryRead', role: 'statistics/read', limits: { throttle: 'registry' }, 
      handle: () => ({ status: 200, body: registry.statistics() }),
    },
    {
      method: 'get', pattern: /^\/statistics\/service\/?$/, right: 'ServiceConnect', role: 'statistics/read',
      handle: () => ({ status: 200, body: { connectedDeviceCount: edge.connectedDeviceCount } }),
    },
  ]
}
