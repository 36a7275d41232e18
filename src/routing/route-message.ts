// The message a route condition sees (routing.md "Routing query language"), and its normal form:
// system properties under canonical lower-case keywords, application properties under lower-case
// names (routing is case-insensitive; of names differing only by case the last one wins), and the
// body parsed as JSON only when routing may look into it.
// Body rule: content type `application/json` (parameters such as `;charset=utf-8` ignored) and
// content encoding UTF-8, UTF-16 or UTF-32, case-insensitive. When `contentEncoding` is absent the
// content type's `charset` parameter counts (routing.md cites `application/json;charset=utf-8`).
// UTF-16/32 bodies are little-endian unless they start with a big-endian byte order mark.
import type { Value } from '../query-common/values.js'
import { jsonDeeperThan } from '../json-depth.js'

export interface RouteMessage {
  /** Keyed by routing keyword (`contentType`, `connectionDeviceId`, …) or wire name (`iothub-enqueuedtime`, `message-id`, …). */
  systemProperties?: Record<string, string | undefined>
  appProperties?: Record<string, string | undefined>
  body?: Uint8Array | string
  /** The sender's twin: `{ tags, properties: { desired, reported } }`. */
  twin?: object
}

export interface PreparedMessage {
  sys: Map<string, string>
  app: Map<string, string>
  body: Value
  twin: Value
}

// wire names and alternative spellings → routing keyword (lower case)
const SYSTEM_ALIASES: Record<string, string> = {
  'message-id': 'messageid', 'correlation-id': 'correlationid', 'user-id': 'userid',
  'content-type': 'contenttype', 'content-encoding': 'contentencoding',
  'iothub-enqueuedtime': 'enqueuedtime', 'iothub-connection-device-id': 'connectiondeviceid',
  'iothub-connection-module-id': 'connectionmoduleid', 'iothub-connection-auth-generation-id': 'connectiondevicegenerationid',
  'iothub-connection-auth-method': 'connectionauthmethod', 'creation-time-utc': 'iothub-creation-time-utc',
  'dt-dataschema': 'dt-dataschema', 'dt-subject': 'dt-subject',
}

/** The canonical key of a system property name, with or without `$`, keyword or wire name. */
export function canonicalSystemName(name: string): string {
  const lower = (name.startsWith('$') ? name.slice(1) : name).toLowerCase()
  return Object.hasOwn(SYSTEM_ALIASES, lower) ? SYSTEM_ALIASES[lower]! : lower
}

function decodeBody(body: Uint8Array, encoding: string): string {
  const buf = Buffer.from(body.buffer, body.byteOffset, body.byteLength)
  if (encoding === 'utf-8') return buf.toString('utf8')
  if (encoding === 'utf-16') {
    if (buf.length >= 2 && buf[0] === 0xfe && buf[1] === 0xff) return new TextDecoder('utf-16be').decode(buf.subarray(2))
    return new TextDecoder('utf-16le').decode(buf)
  }
  const big = buf.length >= 4 && buf[0] === 0 && buf[1] === 0 && buf[2] === 0xfe && buf[3] === 0xff
  let out = ''
  for (let i = big ? 4 : 0; i + 3 < buf.length; i += 4) {
    const cp = big ? buf.readUInt32BE(i) : buf.readUInt32LE(i)
    if (cp === 0xfeff && i === 0) continue
    if (cp > 0x10ffff) throw new Error('invalid UTF-32')
    out += String.fromCodePoint(cp)
  }
  return out
}

/** The encoding routing would read the body with, or undefined when `$body` is off limits. */
export function bodyEncoding(sys: Map<string, string>): string | undefined {
  const type = sys.get('contenttype')
  if (type === undefined) return undefined
  const parts = type.split(';')
  if (parts[0]!.trim().toLowerCase() !== 'application/json') return undefined
  let encoding = sys.get('contentencoding')?.trim().toLowerCase()
  if (encoding === undefined) {
    for (const p of parts.slice(1)) {
      const [k, v] = p.split('=')
      if (k?.trim().toLowerCase() === 'charset' && v) encoding = v.trim().replace(/^"|"$/g, '').toLowerCase()
    }
  }
  return encoding === 'utf-8' || encoding === 'utf-16' || encoding === 'utf-32' ? encoding : undefined
}

export function prepareMessage(message: RouteMessage): PreparedMessage {
  const sys = new Map<string, string>()
  for (const [k, v] of Object.entries(message.systemProperties ?? {})) if (v !== undefined && v !== null) sys.set(canonicalSystemName(k), String(v))
  const app = new Map<string, string>()
  for (const [k, v] of Object.entries(message.appProperties ?? {})) if (v !== undefined && v !== null) app.set(k.toLowerCase(), String(v))
  let body: Value
  const encoding = message.body === undefined ? undefined : bodyEncoding(sys)
  if (encoding !== undefined) {
    try {
      const text = typeof message.body === 'string' ? message.body : decodeBody(message.body!, encoding)
      // too deep to evaluate without recursing past the stack: treated as a body that is not JSON
      body = jsonDeeperThan(text) ? undefined : JSON.parse(text) as Value
    } catch {
      body = undefined
    }
  }
  return { sys, app, body, twin: message.twin as Value }
}
