// The service's REST reads of a service-bound queue (Hyperhub's own, beside Azure's AMQP links):
// `GET /messages/serviceBound/{queue}` answers 200 with a message under a lock token (quoted ETag)
// or 204, `DELETE …/{lock}` completes it and `POST …/{lock}/abandon` puts it back. Used for C2D
// feedback and for file-upload notifications.
import type { ServiceBoundQueue } from '../c2d/service-bound-queue.js'
import type { DataAction } from '../auth/roles.js'
import type { Route } from './http-server.js'
import type { RouteLimits } from './route-limits.js'

export interface ServiceBoundRouteOptions {
  /** the path segment after /messages/serviceBound/ */
  name: string
  queue: ServiceBoundQueue<{ deviceId: string }>
  contentType: string
  /** feedback answers a JSON array of records; a file notification is one JSON object */
  single: boolean
  /** the user id the messages carry (the hub's name, as Azure's do) */
  hubName: string
  limits?: RouteLimits
  /** the data action a bearer token's roles must allow */
  role: DataAction
}

export function serviceBoundRoutes(o: ServiceBoundRouteOptions): Route[] {
  const base = `^\\/messages\\/servicebound\\/${o.name}`
  return [
    {
      method: 'get', pattern: new RegExp(`${base}\\/?$`, 'i'), right: 'ServiceConnect', limits: o.limits, role: o.role, receives: true,
      async handle() {
        const m = await o.queue.receive()
        if (!m) return { status: 204 }
        return {
          status: 200, body: o.single ? m.records[0] : m.records,
          headers: {
            ETag: `"${m.lockToken}"`, 'iothub-locktoken': m.lockToken, 'iothub-messageid': m.messageId, 'iothub-enqueuedtime': m.enqueuedTimeUtc,
            'iothub-deliverycount': String(m.deliveryCount), 'iothub-contenttype': o.contentType, 'iothub-userid': o.hubName,
          },
        }
      },
    },
    {
      method: 'delete', pattern: new RegExp(`${base}\\/([^/]+)\\/?$`, 'i'), right: 'ServiceConnect', limits: o.limits, role: o.role,
      async handle(req) {
        await o.queue.complete(req.params[0]!)
        return { status: 204 }
      },
    },
    {
      method: 'post', pattern: new RegExp(`${base}\\/([^/]+)\\/abandon\\/?$`, 'i'), right: 'ServiceConnect', limits: o.limits, role: o.role,
      handle(req) {
        o.queue.abandon(req.params[0]!)
        return { status: 204 }
      },
    },
  ]
}
