// Cloud-to-device messages over the device HTTPS API (c2d-messaging.md "HTTPS"): a device polls
// `GET …/messages/devicebound` (200 with the message and its lock token as a quoted ETag, or 204),
// then completes (`DELETE …/{lock}`), rejects (`DELETE …/{lock}?reject`) or abandons
// (`POST …/{lock}/abandon`) it. The queue is the one MQTT and AMQP deliver from, in the device's
// shard; a lock lasts a minute, and a token no lock holds any more is 412002.
import type { ShardPool } from '../shard-pool.js'
import type { C2dOutcome } from '../edge/edge-connection.js'
import type { HubThrottles } from '../throttle/hub-throttles.js'
import type { Logger } from '../log.js'
import { HubError } from './hub-error.js'
import type { RestRequest, RestResponse, Route } from './http-server.js'

/** A received message as the shard returns it (shards/c2d-queue.ts `Stored`, with its lock token). */
interface Received {
  lockToken: string
  body: Uint8Array
  messageId?: string
  correlationId?: string
  userId?: string
  contentType?: string
  contentEncoding?: string
  ack: string
  expiry: number
  explicitExpiry: boolean
  enqueuedTime: number
  sequenceNumber: number
  deliveryCount: number
  properties: Record<string, string>
}

/**
 * What the message's headers may take: HTTP clients refuse larger header blocks (Node's default limit
 * is 16 KB), and a message no poll can read would only burn its deliveries. One past it is rejected
 * (dead-lettered, with Rejected feedback where asked) and the poll goes on to the next.
 */
export const MAX_C2D_HEADER_BYTES = 12 * 1024
/** the queue's depth: a poll looks at no more messages than a queue holds */
const MAX_SKIPPED = 50

/** Lock tokens are GUIDs: anything else cannot name a lock (and must not reach a header or a log). */
const LOCK_TOKEN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** Header values are printable ASCII; anything else (a newline from an AMQP sender) is percent-encoded. */
function headerValue(v: string): string {
  return /^[\x20-\x7e]*$/.test(v) ? v : encodeURIComponent(v)
}

function headersOf(deviceId: string, m: Received): Record<string, string> {
  const h: Record<string, string> = {
    ETag: `"${m.lockToken}"`,
    'Content-Type': 'application/octet-stream',
    'iothub-sequencenumber': String(m.sequenceNumber),
    'iothub-to': `/devices/${encodeURIComponent(deviceId)}/messages/devicebound`,
    'iothub-enqueuedtime': new Date(m.enqueuedTime).toISOString(),
    'iothub-deliverycount': String(m.deliveryCount),
    'iothub-ack': m.ack,
  }
  if (m.explicitExpiry) h['iothub-expiry'] = new Date(m.expiry).toISOString()
  const optional: [string, string | undefined][] = [
    ['iothub-messageid', m.messageId], ['iothub-correlationid', m.correlationId], ['iothub-userid', m.userId],
    ['iothub-contenttype', m.contentType], ['iothub-contentencoding', m.contentEncoding],
  ]
  for (const [k, v] of optional) if (v) h[k] = headerValue(v)
  for (const [k, v] of Object.entries(m.properties)) {
    // names are HTTP tokens when sent over REST; an AMQP sender's may not be
    const name = `iothub-app-${encodeURIComponent(k).replace(/[()]/g, (c) => `%${c.charCodeAt(0).toString(16)}`)}`
    if (!Object.hasOwn(h, name)) h[name] = headerValue(v)
  }
  return h
}

function lockOf(req: RestRequest): string {
  const token = req.params[1]!
  if (!LOCK_TOKEN.test(token)) throw new HubError(412002, 'the lock token is not one this hub issued: it is a GUID')
  // If-Match (quoted or not, as the SDKs send it) must name the same lock when given
  const ifMatch = req.headers['if-match']?.replace(/^"(.*)"$/, '$1')
  if (ifMatch !== undefined && ifMatch !== '*' && ifMatch.toLowerCase() !== token.toLowerCase()) {
    throw new HubError(412002, 'If-Match names another lock token than the path')
  }
  return token.toLowerCase()
}

export function deviceC2dRoutes(shards: ShardPool, throttles: HubThrottles, log: Logger): Route[] {
  const settle = async (req: RestRequest, outcome: C2dOutcome): Promise<RestResponse> => {
    await shards.request('c2d.settle', req.device!.device.deviceId, lockOf(req), outcome)
    return { status: 204 }
  }
  const limits = { throttle: 'c2dReceives', standardOnly: 'cloud-to-device messages' } as const
  return [
    {
      method: 'get', pattern: /^\/devices\/([^/]+)\/messages\/devicebound\/?$/i, right: 'Device', limits, receives: true,
      async handle(req) {
        const deviceId = req.device!.device.deviceId
        for (let skipped = 0; skipped <= MAX_SKIPPED; skipped++) {
          const m = await shards.request<Received | null>('c2d.receive', deviceId)
          if (!m) return { status: 204 }
          const headers = headersOf(deviceId, m)
          const bytes = Object.entries(headers).reduce((n, [k, v]) => n + k.length + v.length + 4, 0)
          if (bytes > MAX_C2D_HEADER_BYTES) {
            log.warn('C2D message too large for HTTP headers: rejected', { deviceId, sequenceNumber: m.sequenceNumber, headerBytes: bytes })
            await shards.request('c2d.settle', deviceId, m.lockToken, 'reject')
            continue
          }
          // billed once, as over MQTT: its redeliveries are not
          if (m.deliveryCount === 1) throttles.meter.bill('c2d', throttles.meter.chunks(m.body.length))
          return { status: 200, headers, body: Buffer.from(m.body.buffer, m.body.byteOffset, m.body.byteLength) }
        }
        return { status: 204 }
      },
    },
    {
      method: 'delete', pattern: /^\/devices\/([^/]+)\/messages\/devicebound\/([^/]+)\/?$/i, right: 'Device', limits: { standardOnly: limits.standardOnly },
      handle: (req) => settle(req, req.query.has('reject') ? 'reject' : 'complete'),
    },
    {
      method: 'post', pattern: /^\/devices\/([^/]+)\/messages\/devicebound\/([^/]+)\/abandon\/?$/i, right: 'Device', limits: { standardOnly: limits.standardOnly },
      handle: (req) => settle(req, 'abandon'),
    },
  ]
}
