// IoT Plug and Play's digital twin API (sdk-compat.md "DigitalTwinClient"): `GET /digitaltwins/{id}`,
// `PATCH /digitaltwins/{id}` (a JSON Patch, 202), and commands on the root or a component
// (`POST /digitaltwins/{id}/commands/{name}`, `…/components/{path}/commands/{name}`), over the twin
// and direct-method machinery. The id is `{deviceId}` or `{deviceId}~{moduleId}`.
import { randomUUID } from 'node:crypto'
import { desiredPatchOf, digitalTwinOf } from '../digital-twins/digital-twin-view.js'
import type { DeviceEdge } from '../edge/device-edge.js'
import { MAX_METHOD_PAYLOAD_BYTES } from '../mqtt/method-calls.js'
import type { DeviceRegistry } from '../registry/device-registry.js'
import type { ModuleRegistry } from '../registry/module-registry.js'
import type { ShardPool } from '../shard-pool.js'
import { moduleKey } from '../shard-protocol.js'
import { HubError } from './hub-error.js'
import type { RestRequest, Route } from './http-server.js'
import { methodLimits, twinReadLimits, twinUpdateLimits } from './route-limits.js'
import type { TwinCore } from './twin-routes.js'

const TWIN_READ = twinReadLimits('digital twins')
const TWIN_UPDATE = twinUpdateLimits('digital twins')
const COMMANDS = methodLimits('digital twin commands')
const TWIN = /^\/digitaltwins\/([^/]+)\/?$/
// a command name is a method name (method-routes.ts); a component name is a property name
const NAME = /^[!#%&'*+\-.0-9A-Z^_`a-z|~]{1,128}$/

function timeout(req: RestRequest, name: string, dflt: number, min: number, max: number): number {
  const raw = req.query.get(name)
  if (raw === null || raw === '') return dflt
  const v = Number(raw)
  if (!Number.isInteger(v) || v < min || v > max) throw new HubError(400004, `${name} must be an integer ${min}..${max}`)
  return v
}

export function digitalTwinRoutes(registry: DeviceRegistry, modules: ModuleRegistry, shards: ShardPool, edge: DeviceEdge): Route[] {
  /** Whose twin: a device, or a module (`d~m`), checked to exist. */
  const target = (id: string) => {
    const tilde = id.indexOf('~')
    const deviceId = tilde < 0 ? id : id.slice(0, tilde)
    const device = registry.get(deviceId)
    if (!device) throw new HubError(404001, `Device ${deviceId} not registered`)
    if (tilde < 0) return { deviceId, moduleId: undefined, modelId: device.modelId ?? '' }
    const moduleId = id.slice(tilde + 1)
    modules.require(deviceId, moduleId)
    return { deviceId, moduleId, modelId: '' }
  }
  const twinOf = (t: ReturnType<typeof target>) => t.moduleId === undefined
    ? shards.request<TwinCore>('twin.get', t.deviceId) : shards.requestForModule<TwinCore>('twin.get', t.deviceId, t.moduleId)
  const sections = (core: TwinCore) => core.properties as { desired: Record<string, unknown>; reported: Record<string, unknown> }

  const command = async (req: RestRequest, id: string, methodName: string) => {
    const t = target(id)
    if (req.body.length > MAX_METHOD_PAYLOAD_BYTES) throw new HubError(413001, `payload of ${req.body.length} bytes exceeds ${MAX_METHOD_PAYLOAD_BYTES}`)
    const payload = req.body.length === 0 ? Buffer.from('null') : Buffer.from(JSON.stringify(req.json()))
    const connect = timeout(req, 'connectTimeoutInSeconds', 0, 0, 300)
    const response = timeout(req, 'responseTimeoutInSeconds', 30, 5, 300)
    const key = t.moduleId === undefined ? t.deviceId : moduleKey(t.deviceId, t.moduleId)
    const result = await edge.methods.invoke(key, methodName, payload, response * 1000, connect * 1000)
    return { status: 200, body: result.payload ?? null, headers: { 'x-ms-command-statuscode': String(result.status), 'x-ms-request-id': randomUUID() } }
  }

  return [
    {
      method: 'get', pattern: TWIN, right: 'ServiceConnect', role: 'twins/read', limits: TWIN_READ,
      async handle(req) {
        const id = req.params[0]!
        const t = target(id)
        const core = await twinOf(t)
        return { status: 200, body: digitalTwinOf(id, core.etag, t.modelId, sections(core)), headers: { ETag: `"${core.etag}"` } }
      },
    },
    {
      method: 'patch', pattern: TWIN, right: 'ServiceConnect', role: 'twins/write', limits: TWIN_UPDATE,
      async handle(req) {
        const t = target(req.params[0]!)
        const operations = req.json()
        const patch = desiredPatchOf(operations, sections(await twinOf(t)))
        const body = { properties: { desired: patch } }
        const ifMatch = req.headers['if-match'] ?? null
        const core = t.moduleId === undefined
          ? await shards.request<TwinCore>('twin.update', t.deviceId, 'patch', body, ifMatch)
          : await shards.requestForModule<TwinCore>('twin.update', t.deviceId, t.moduleId, 'patch', body, ifMatch)
        return { status: 202, headers: { ETag: `"${core.etag}"`, Location: `/digitaltwins/${encodeURIComponent(req.params[0]!)}` } }
      },
    },
    {
      method: 'post', pattern: /^\/digitaltwins\/([^/]+)\/commands\/([^/]+)\/?$/, right: 'ServiceConnect', role: 'directMethods/invoke/action', limits: COMMANDS,
      handle(req) {
        if (!NAME.test(req.params[1]!)) throw new HubError(400004, 'the command name must be 1-128 printable US-ASCII characters without $ ( ) < > @ , ; : \\ " / [ ] ? = { } or spaces')
        return command(req, req.params[0]!, req.params[1]!)
      },
    },
    {
      method: 'post', pattern: /^\/digitaltwins\/([^/]+)\/components\/([^/]+)\/commands\/([^/]+)\/?$/, right: 'ServiceConnect', role: 'directMethods/invoke/action', limits: COMMANDS,
      handle(req) {
        const [component, name] = [req.params[1]!, req.params[2]!]
        if (!NAME.test(component) || !NAME.test(name) || component.includes('*')) throw new HubError(400004, 'component and command names must be 1-128 printable US-ASCII characters (no *)')
        // IoT Plug and Play calls a component's command as the method `{component}*{command}`
        return command(req, req.params[0]!, `${component}*${name}`)
      },
    },
  ]
}
