// Module identity REST routes (identity-registry.md "Modules", api-version 2021-04-12):
// `PUT/GET/DELETE /devices/{id}/modules/{moduleId}` and `GET /devices/{id}/modules`, with etags.
import type { ModuleRecord, ModuleRegistry } from '../registry/module-registry.js'
import type { Route } from './http-server.js'

const MODULE = /^\/devices\/([^/]+)\/modules\/([^/]+)\/?$/

export function moduleRoutes(modules: ModuleRegistry): Route[] {
  const reply = (m: ModuleRecord) => ({ status: 200, body: modules.toJson(m), headers: { ETag: `"${m.etag}"` } })
  const limits = { throttle: 'registry' } as const
  return [
    {
      method: 'get', pattern: /^\/devices\/([^/]+)\/modules\/?$/, right: 'RegistryRead', role: 'devices/read', limits,
      handle: (req) => ({ status: 200, body: modules.list(req.params[0]!).map((m) => modules.toJson(m)) }),
    },
    {
      method: 'get', pattern: MODULE, right: 'RegistryRead', role: 'devices/read', limits,
      handle: (req) => reply(modules.require(req.params[0]!, req.params[1]!)),
    },
    {
      method: 'put', pattern: MODULE, right: 'RegistryWrite', role: 'devices/write', limits,
      async handle(req) {
        return reply(await modules.put(req.params[0]!, req.params[1]!, req.json(), req.headers['if-match']))
      },
    },
    {
      method: 'delete', pattern: MODULE, right: 'RegistryWrite', role: 'devices/delete', limits,
      async handle(req) {
        await modules.delete(req.params[0]!, req.params[1]!, req.headers['if-match'])
        return { status: 204 }
      },
    },
  ]
}
