// Direct method invocation (direct-methods.md): `POST /twins/{id}/methods`, and a module's
// `POST /twins/{id}/modules/{moduleId}/methods`.
import type { DeviceEdge } from '../edge/device-edge.js'
import { MAX_METHOD_PAYLOAD_BYTES } from '../mqtt/method-calls.js'
import type { DeviceRegistry } from '../registry/device-registry.js'
import type { ModuleRegistry } from '../registry/module-registry.js'
import { moduleKey } from '../shard-protocol.js'
import { HubError } from './hub-error.js'
import type { Route } from './http-server.js'
import { methodLimits } from './route-limits.js'

// US-ASCII printable without $ ( ) < > @ , ; : \ " / [ ] ? = { } space and tab
export const METHOD_NAME = /^[!#%&'*+\-.0-9A-Z^_`a-z|~]{1,128}$/

/** An optional whole number of seconds in [min, max] (`dflt` when absent); 400004 otherwise. */
export function seconds(v: unknown, name: string, dflt: number, min: number, max: number): number {
  if (v === undefined || v === null) return dflt
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new HubError(400004, `${name} must be an integer ${min}..${max}`)
  return v
}

/** A method call's body, checked: name, timeouts (seconds) and JSON payload. */
function methodCall(body: unknown): { methodName: string; responseTimeoutMs: number; connectTimeoutMs: number; payload: Buffer } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HubError(400004, 'the body must be a method call object')
  const b = body as Record<string, unknown>
  if (typeof b.methodName !== 'string' || !METHOD_NAME.test(b.methodName)) {
    throw new HubError(400004, 'methodName is required: 1-128 printable US-ASCII characters without $ ( ) < > @ , ; : \\ " / [ ] ? = { } or spaces')
  }
  const responseTimeout = seconds(b.responseTimeoutInSeconds, 'responseTimeoutInSeconds', 30, 5, 300)
  const connectTimeout = seconds(b.connectTimeoutInSeconds, 'connectTimeoutInSeconds', 0, 0, 300)
  const payload = Buffer.from(JSON.stringify(b.payload ?? null))
  if (payload.length > MAX_METHOD_PAYLOAD_BYTES) throw new HubError(413001, `payload of ${payload.length} bytes exceeds ${MAX_METHOD_PAYLOAD_BYTES}`)
  return { methodName: b.methodName, responseTimeoutMs: responseTimeout * 1000, connectTimeoutMs: connectTimeout * 1000, payload }
}

const METHOD_LIMITS = methodLimits('direct methods')

export function methodRoutes(registry: DeviceRegistry, edge: DeviceEdge, modules: ModuleRegistry): Route[] {
  return [{
    method: 'post', pattern: /^\/twins\/([^/]+)\/methods\/?$/, right: 'ServiceConnect', role: 'directMethods/invoke/action', limits: METHOD_LIMITS,
    async handle(req) {
      const deviceId = req.params[0]!
      const call = methodCall(req.json())
      if (!registry.get(deviceId)) throw new HubError(404001, `Device ${deviceId} not registered`)
      const result = await edge.methods.invoke(deviceId, call.methodName, call.payload, call.responseTimeoutMs, call.connectTimeoutMs)
      return { status: 200, body: result }
    },
  }, {
    method: 'post', pattern: /^\/twins\/([^/]+)\/modules\/([^/]+)\/methods\/?$/, right: 'ServiceConnect', role: 'directMethods/invoke/action', limits: METHOD_LIMITS,
    async handle(req) {
      const [deviceId, moduleId] = [req.params[0]!, req.params[1]!]
      const call = methodCall(req.json())
      modules.require(deviceId, moduleId)
      const result = await edge.methods.invoke(moduleKey(deviceId, moduleId), call.methodName, call.payload, call.responseTimeoutMs, call.connectTimeoutMs)
      return { status: 200, body: result }
    },
  }]
}
