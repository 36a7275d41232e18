// Direct method invocation (direct-methods.md): `POST /twins/{id}/methods`.
import type { DeviceEdge } from '../edge/device-edge.js'
import { MAX_METHOD_PAYLOAD_BYTES } from '../mqtt/method-calls.js'
import type { DeviceRegistry } from '../registry/device-registry.js'
import { HubError } from './hub-error.js'
import type { Route } from './http-server.js'

// US-ASCII printable without $ ( ) < > @ , ; : \ " / [ ] ? = { } space and tab
const METHOD_NAME = /^[!#%&'*+\-.0-9A-Z^_`a-z|~]{1,128}$/

function seconds(v: unknown, name: string, dflt: number, min: number, max: number): number {
  if (v === undefined || v === null) return dflt
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new HubError(400004, `${name} must be an integer ${min}..${max}`)
  return v
}

export function methodRoutes(registry: DeviceRegistry, edge: DeviceEdge): Route[] {
  return [{
    method: 'post', pattern: /^\/twins\/([^/]+)\/methods\/?$/, right: 'ServiceConnect',
    // the methods throttle meters KB on a 4 KB meter: a call of up to 4 KB costs 4
    limits: { throttle: 'methodKB', cost: (req) => 4 * Math.max(1, Math.ceil(req.body.length / 4096)), meter: { op: 'methods', bytes: 'both' }, standardOnly: 'direct methods' },
    async handle(req) {
      const deviceId = req.params[0]!
      const body = req.json<Record<string, unknown>>()
      if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HubError(400004, 'the body must be a method call object')
      if (typeof body.methodName !== 'string' || !METHOD_NAME.test(body.methodName)) {
        throw new HubError(400004, 'methodName is required: 1-128 printable US-ASCII characters without $ ( ) < > @ , ; : \\ " / [ ] ? = { } or spaces')
      }
      const responseTimeout = seconds(body.responseTimeoutInSeconds, 'responseTimeoutInSeconds', 30, 5, 300)
      const connectTimeout = seconds(body.connectTimeoutInSeconds, 'connectTimeoutInSeconds', 0, 0, 300)
      const payload = Buffer.from(JSON.stringify(body.payload ?? null))
      if (payload.length > MAX_METHOD_PAYLOAD_BYTES) throw new HubError(413001, `payload of ${payload.length} bytes exceeds ${MAX_METHOD_PAYLOAD_BYTES}`)
      if (!registry.get(deviceId)) throw new HubError(404001, `Device ${deviceId} not registered`)
      const result = await edge.methods.invoke(deviceId, body.methodName, payload, responseTimeout * 1000, connectTimeout * 1000)
      return { status: 200, body: result }
    },
  }]
}
