// Cloud-to-device REST routes: send (Hyperhub's own, since Azure's service side sends C2D over AMQP
// only), purge, and the service's feedback queue (c2d-messaging.md "Endpoints").
import type { FeedbackQueue } from '../c2d/service-bound-queue.js'
import type { DeviceRegistry } from '../registry/device-registry.js'
import type { ShardPool } from '../shard-pool.js'
import { HubError } from './hub-error.js'
import { clientKeyed } from '../mqtt/property-bag.js'
import type { RestRequest, Route } from './http-server.js'
import type { RouteLimits } from './route-limits.js'
import { serviceBoundRoutes } from './service-bound-routes.js'

const ACKS = new Set(['none', 'positive', 'negative', 'full'])
// message ids: at most 128 ASCII characters (as for D2C)
const MESSAGE_ID = /^[\x20-\x7e]{1,128}$/
const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/

/** The message's properties from `iothub-*` headers, as the device HTTP API carries them. */
export function c2dFromHeaders(req: RestRequest, deviceId: string): Record<string, unknown> {
  const h = req.headers
  const text = (name: string, max = 128) => {
    const v = h[name]
    if (v === undefined || v === '') return undefined
    if (v.length > max) throw new HubError(400004, `${name} is longer than ${max} characters`)
    return v
  }
  const messageId = text('iothub-messageid')
  if (messageId !== undefined && !MESSAGE_ID.test(messageId)) throw new HubError(400004, 'iothub-messageid must be printable ASCII')
  const ack = (h['iothub-ack'] ?? 'none').toLowerCase()
  if (!ACKS.has(ack)) throw new HubError(400004, 'iothub-ack must be none, positive, negative or full')
  const to = h['iothub-to']
  if (to !== undefined && to.toLowerCase() !== `/devices/${deviceId}/messages/devicebound`.toLowerCase()) {
    throw new HubError(400003, `iothub-to must be /devices/${deviceId}/messages/devicebound`)
  }
  let expiry: number | undefined
  if (h['iothub-expiry'] !== undefined) {
    expiry = Date.parse(h['iothub-expiry'])
    if (Number.isNaN(expiry)) throw new HubError(400004, 'iothub-expiry must be an ISO 8601 time')
    if (expiry <= Date.now()) throw new HubError(400004, 'iothub-expiry is in the past')
  }
  const properties = clientKeyed()
  for (const [k, v] of Object.entries(h)) {
    if (!k.startsWith('iothub-app-')) continue
    const name = k.slice('iothub-app-'.length)
    if (!name || !HEADER_NAME.test(name)) throw new HubError(400004, `application property name ${JSON.stringify(name)} is not an HTTP token`)
    properties[name] = v
  }
  return {
    messageId, correlationId: text('iothub-correlationid'), userId: text('iothub-userid'),
    contentType: text('iothub-contenttype', 1024), contentEncoding: text('iothub-contentencoding', 1024),
    ack, expiry, properties, body: req.body,
  }
}

/** `hubName`: feedback carries it as its user id, as Azure's does. */
const C2D_ONLY: RouteLimits = { standardOnly: 'cloud-to-device messages' }

export function c2dRoutes(registry: DeviceRegistry, shards: ShardPool, feedback: FeedbackQueue, hubName: string): Route[] {
  const device = (id: string) => {
    const d = registry.get(id)
    if (!d) throw new HubError(404001, `Device ${id} not registered`)
    return d
  }
  return [
    {
      method: 'post', pattern: /^\/devices\/([^/]+)\/messages\/devicebound\/?$/i, right: 'ServiceConnect', role: 'cloudToDeviceMessages/send/action', limits: { throttle: 'c2dSends', standardOnly: 'cloud-to-device messages' }, // billed when delivered (device-edge.ts)
      async handle(req) {
        const d = device(req.params[0]!)
        const msg = c2dFromHeaders(req, d.deviceId)
        // undefined fields would cross the thread boundary as nulls
        for (const k of Object.keys(msg)) if (msg[k] === undefined) delete msg[k]
        const r = await shards.request<Record<string, unknown>>('c2d.send', d.deviceId, d.generationId, msg)
        return { status: 200, body: { deviceId: d.deviceId, messageId: msg.messageId ?? null, ...r } }
      },
    },
    {
      method: 'delete', pattern: /^\/devices\/([^/]+)\/commands\/?$/, right: 'ServiceConnect', role: 'cloudToDeviceMessages/queue/purge/action', limits: C2D_ONLY,
      async handle(req) {
        const d = device(req.params[0]!)
        const purged = await shards.request<number>('c2d.purge', d.deviceId)
        return { status: 200, body: { deviceId: d.deviceId, totalMessagesPurged: purged } }
      },
    },
    ...serviceBoundRoutes({ name: 'feedback', queue: feedback, contentType: 'application/vnd.microsoft.iothub.feedback.json', single: false, hubName, limits: C2D_ONLY, role: 'cloudToDeviceMessages/feedback/action' }),
  ]
}
