// The URL-encoded property bag at the end of an IoT Hub MQTT topic: `$.`-keys are system
// properties, everything else is an application property.

/** MQTT `$.` keys → the system property names the built-in endpoint carries. */
const SYSTEM_KEYS: Record<string, string> = {
  '$.mid': 'message-id',
  '$.cid': 'correlation-id',
  '$.uid': 'user-id',
  '$.to': 'to',
  '$.ct': 'content-type',
  '$.ce': 'content-encoding',
  '$.exp': 'absolute-expiry-time',
  '$.ctime': 'iothub-creation-time-utc',
  '$.sub': 'dt-subject',
  '$.ifid': 'iothub-interface-id',
  '$.on': 'iothub-outputname',
  '$.schema': 'iothub-message-schema',
  '$.diagid': 'iothub-diag-id',
  '$.diagctx': 'iothub-diag-correlation-context',
}

export interface ParsedBag {
  system: Record<string, string>
  properties: Record<string, string>
  /** Names and values, in bytes, as Azure counts them toward the 256 KB limit. */
  size: number
}

export class BagError extends Error {}

/**
 * Objects keyed by what a client sent: no prototype, so `__proto__`, `constructor` or `toString`
 * are plain names like any other.
 */
export function clientKeyed(): Record<string, string> {
  return Object.create(null) as Record<string, string>
}

export function parsePropertyBag(bag: string): ParsedBag {
  const system = clientKeyed()
  const properties = clientKeyed()
  let size = 0
  // a trailing '/' (module output events) is not part of the bag
  const text = bag.endsWith('/') ? bag.slice(0, -1) : bag
  if (text.length === 0) return { system, properties, size }
  for (const pair of text.split('&')) {
    if (pair === '') continue
    const eq = pair.indexOf('=')
    let key: string, value: string
    try {
      key = decodeURIComponent(eq < 0 ? pair : pair.slice(0, eq))
      value = eq < 0 ? '' : decodeURIComponent(pair.slice(eq + 1))
    } catch {
      throw new BagError('property bag is not URL-encoded correctly')
    }
    const systemName = Object.hasOwn(SYSTEM_KEYS, key) ? SYSTEM_KEYS[key] : undefined
    if (systemName) {
      system[systemName] = value
      size += Buffer.byteLength(value)
    } else if (!key.startsWith('$.')) {
      properties[key] = value
      size += Buffer.byteLength(key) + Buffer.byteLength(value)
    }
  }
  return { system, properties, size }
}

/** Encodes properties for a topic, with `/` as %2F so the SDK's split on '/' holds. */
export function formatPropertyBag(props: Record<string, string>): string {
  return Object.entries(props).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&')
}
