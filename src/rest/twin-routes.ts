// Device twin REST routes (twins.md "Service REST operations"): the twin itself lives in the device's
// shard; the identity fields Azure copies into a twin come from the registry and the edge.
import { scopeJson, type DeviceRecord, type DeviceRegistry } from '../registry/device-registry.js'
import type { ShardPool } from '../shard-pool.js'
import { HubError } from './hub-error.js'
import type { Route, RestRequest } from './http-server.js'
import { twinReadLimits, twinUpdateLimits } from './route-limits.js'

/** What a shard answers for a twin (shards/twin-store.ts), as the routes read it. */
export interface TwinCore { etag: string; version: number; tags: Record<string, unknown>; properties: { desired: unknown; reported: unknown }; configurations?: unknown }

const TWIN = /^\/twins\/([^/]+)\/?$/

export function twinJson(registry: Pick<DeviceRegistry, 'toJson'>, d: DeviceRecord, core: TwinCore): Record<string, unknown> {
  const identity = registry.toJson(d)
  return {
    deviceId: d.deviceId,
    etag: core.etag,
    deviceEtag: d.etag,
    status: d.status,
    statusReason: d.statusReason,
    // the twin writes times with a Z (the identity's never-set time has none, as .NET's DateTime.MinValue)
    statusUpdateTime: d.statusUpdatedTime.endsWith('Z') ? d.statusUpdatedTime : `${d.statusUpdatedTime}Z`,
    connectionState: identity.connectionState,
    lastActivityTime: identity.lastActivityTime,
    cloudToDeviceMessageCount: identity.cloudToDeviceMessageCount,
    authenticationType: d.authentication.type,
    x509Thumbprint: d.authentication.x509Thumbprint,
    modelId: d.modelId ?? '',
    version: core.version,
    capabilities: d.capabilities,
    ...scopeJson(d),
    ...twinContent(core),
  }
}

/** What a device's and a module's twin end with: tags (left out when there are none, as Azure does), properties, configurations. */
export function twinContent(core: TwinCore): Record<string, unknown> {
  return {
    ...(Object.keys(core.tags).length > 0 ? { tags: core.tags } : {}),
    properties: core.properties,
    ...(core.configurations ? { configurations: core.configurations } : {}),
  }
}

const TWIN_READ = twinReadLimits('device twins')
const TWIN_UPDATE = twinUpdateLimits('device twins')

export function twinRoutes(registry: DeviceRegistry, shards: ShardPool): Route[] {
  const device = (req: RestRequest) => {
    const d = registry.get(req.params[0]!)
    if (!d) throw new HubError(404001, `Device ${req.params[0]} not registered`)
    return d
  }
  const reply = (d: DeviceRecord, core: TwinCore) => ({ status: 200, body: twinJson(registry, d, core), headers: { ETag: `"${core.etag}"` } })
  const update = (mode: 'patch' | 'replace') => async (req: RestRequest) => {
    const d = device(req)
    const body = req.json()
    const core = await shards.request<TwinCore>('twin.update', d.deviceId, mode, body, req.headers['if-match'] ?? null)
    return reply(d, core)
  }
  return [
    {
      method: 'get', pattern: TWIN, right: 'ServiceConnect', role: 'twins/read', limits: TWIN_READ,
      async handle(req) {
        const d = device(req)
        return reply(d, await shards.request<TwinCore>('twin.get', d.deviceId))
      },
    },
    { method: 'patch', pattern: TWIN, right: 'ServiceConnect', role: 'twins/write', limits: TWIN_UPDATE, handle: update('patch') },
    { method: 'put', pattern: TWIN, right: 'ServiceConnect', role: 'twins/write', limits: TWIN_UPDATE, handle: update('replace') },
  ]
}
