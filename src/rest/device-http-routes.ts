// The device HTTPS API's telemetry (azure-iot-device-http): one message, its properties in
// `iothub-app-*` and the system-property headers, or a batch (`application/vnd.microsoft.iothub.json`:
// a JSON array of {body: base64, properties}), at most 256 KB; 204 once every message is committed.
// A device reaches only its own path (right `Device`), a module only its module's (`Module`).
import type { RestRequest, Route } from './http-server.js'
import { HubError } from './hub-error.js'
import { formatPropertyBag, clientKeyed } from '../mqtt/property-bag.js'
import { MAX_MESSAGE_BYTES } from '../../shards/message-limits.js'
import type { HttpDevices, HttpTelemetry } from '../edge/http-device.js'

const APP_PREFIX = 'iothub-app-'
const SYSTEM_HEADERS: Record<string, string> = {
  'iothub-messageid': '$.mid', 'iothub-correlationid': '$.cid', 'iothub-userid': '$.uid',
  'iothub-contenttype': '$.ct', 'iothub-contentencoding': '$.ce', 'iothub-expiry': '$.exp',
}
const BATCH_TYPE = 'application/vnd.microsoft.iothub.json'
/** Azure: at most 500 messages in a batch */
const MAX_BATCH_MESSAGES = 500

function single(req: RestRequest): HttpTelemetry {
  const props = clientKeyed()
  for (const [k, v] of Object.entries(req.headers)) {
    if (Object.hasOwn(SYSTEM_HEADERS, k)) props[SYSTEM_HEADERS[k]!] = v
    else if (k.startsWith(APP_PREFIX) && k.length > APP_PREFIX.length) props[k.slice(APP_PREFIX.length)] = v
  }
  return { bag: formatPropertyBag(props), body: req.body }
}

function batch(req: RestRequest): HttpTelemetry[] {
  const items = req.json<unknown>()
  if (!Array.isArray(items)) throw new HubError(400004, 'a batch is a JSON array of {"body": "<base64>", "properties": {...}}')
  if (items.length > MAX_BATCH_MESSAGES) throw new HubError(400004, `a batch holds at most ${MAX_BATCH_MESSAGES} messages`)
  return items.map((item, i) => {
    if (typeof item !== 'object' || item === null || typeof (item as { body?: unknown }).body !== 'string') throw new HubError(400004, `message ${i} of the batch has no base64 "body"`)
    const props = clientKeyed()
    const given = (item as { properties?: unknown }).properties
    if (given !== undefined && (typeof given !== 'object' || given === null || Array.isArray(given))) throw new HubError(400004, `message ${i}'s "properties" must be an object`)
    for (const [k, v] of Object.entries((given ?? {}) as Record<string, unknown>)) {
      const key = k.toLowerCase()
      if (Object.hasOwn(SYSTEM_HEADERS, key)) props[SYSTEM_HEADERS[key]!] = String(v)
      else props[key.startsWith(APP_PREFIX) ? k.slice(APP_PREFIX.length) : k] = String(v)
    }
    return { bag: formatPropertyBag(props), body: Buffer.from((item as { body: string }).body, 'base64') }
  })
}

export function deviceHttpRoutes(devices: HttpDevices): Route[] {
  const post = async (req: RestRequest) => {
    // the body and, for one message, its properties; a batch as a whole
    const size = req.body.length + Object.entries(req.headers).reduce((n, [k, v]) => n + (k.startsWith('iothub-') ? k.length + v.length : 0), 0)
    if (size > MAX_MESSAGE_BYTES) throw new HubError(413001, `the message is ${size} bytes; IoT Hub takes at most ${MAX_MESSAGE_BYTES}`)
    const messages = (req.headers['content-type'] ?? '').toLowerCase().startsWith(BATCH_TYPE) ? batch(req) : [single(req)]
    await devices.post(req.device!, messages)
    return { status: 204 }
  }
  return [
    { method: 'post', pattern: /^\/devices\/([^/]+)\/messages\/events\/?$/i, right: 'Device', handle: post },
    // a module's telemetry (right `Module`: its own token for that module)
    { method: 'post', pattern: /^\/devices\/([^/]+)\/modules\/([^/]+)\/messages\/events\/?$/i, right: 'Module', handle: post },
  ]
}
