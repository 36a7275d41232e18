// Module twin REST routes (twins.md: `GET/PATCH/PUT /twins/{id}/modules/{moduleId}`): a module's twin
// lives in its device's shard under `{deviceId}/{moduleId}`, with the same tags, desired and reported
// sections, versions and etags as a device twin; the identity fields come from the module registry.
import type { PresenceView } from '../registry/device-registry.js'
import { moduleIdentityJson, type ModuleRecord, type ModuleRegistry } from '../registry/module-registry.js'
import type { ShardPool } from '../shard-pool.js'
import type { RestRequest, Route } from './http-server.js'
import { twinContent, type TwinCore } from './twin-routes.js'
import { twinReadLimits, twinUpdateLimits } from './route-limits.js'


const MODULE_TWIN = /^\/twins\/([^/]+)\/modules\/([^/]+)\/?$/

export function moduleTwinJson(m: ModuleRecord, core: TwinCore, presence?: PresenceView): Record<string, unknown> {
  const identity = moduleIdentityJson(m, presence)
  return {
    deviceId: m.deviceId,
    moduleId: m.moduleId,
    etag: core.etag,
    deviceEtag: m.etag,
    status: 'enabled',
    statusUpdateTime: '0001-01-01T00:00:00Z',
    connectionState: identity.connectionState,
    lastActivityTime: identity.lastActivityTime,
    cloudToDeviceMessageCount: identity.cloudToDeviceMessageCount,
    authenticationType: m.authentication.type,
    x509Thumbprint: m.authentication.x509Thumbprint,
    modelId: '',
    version: core.version,
    ...twinContent(core),
  }
}

const TWIN_READ = twinReadLimits('module twins')
const TWIN_UPDATE = twinUpdateLimits('module twins')

export function moduleTwinRoutes(modules: ModuleRegistry, shards: ShardPool): Route[] {
  const reply = (m: ModuleRecord, core: TwinCore) => ({ status: 200, body: moduleTwinJson(m, core, modules.presence), headers: { ETag: `"${core.etag}"` } })
  const update = (mode: 'patch' | 'replace') => async (req: RestRequest) => {
    const m = modules.require(req.params[0]!, req.params[1]!)
    const core = await shards.requestForModule<TwinCore>('twin.update', m.deviceId, m.moduleId, mode, req.json(), req.headers['if-match'] ?? null)
    return reply(m, core)
  }
  return [
    {
      method: 'get', pattern: MODULE_TWIN, right: 'ServiceConnect', role: 'twins/read', limits: TWIN_READ,
      async handle(req) {
        const m = modules.require(req.params[0]!, req.params[1]!)
        return reply(m, await shards.requestForModule<TwinCore>('twin.get', m.deviceId, m.moduleId))
      },
    },
    { method: 'patch', pattern: MODULE_TWIN, right: 'ServiceConnect', role: 'twins/write', limits: TWIN_UPDATE, handle: update('patch') },
    { method: 'put', pattern: MODULE_TWIN, right: 'ServiceConnect', role: 'twins/write', limits: TWIN_UPDATE, handle: update('replace') },
  ]
}
