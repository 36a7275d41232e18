// Device messages between AMQP and the form the shards speak (MQTT's property bags and topics):
// telemetry from a device's events link becomes a property bag, and what a shard publishes to a
// device (a C2D message, a twin answer, a desired-properties patch) becomes an AMQP message. The
// mapping is Azure's (sdk-compat.md, amqp-device-wire notes): system properties in the AMQP
// properties section, application properties as they are, bodies in a data section.
import rhea from 'rhea'
import { clientKeyed, formatPropertyBag, parsePropertyBag } from '../mqtt/property-bag.js'
import { topicQuery, TWIN_RESPONSE_PREFIX } from '../mqtt/iothub-topics.js'
import { bodyBytes, idText } from './amqp-values.js'

/** Message annotations a device may set that IoT Hub keeps as system properties. */
const ANNOTATION_KEYS: Record<string, string> = {
  'dt-subject': '$.sub',
  'iothub-interface-id': '$.ifid',
  'iothub-creation-time-utc': '$.ctime',
}
/** Application properties the SDKs use for what MQTT carries as system properties. */
const APPLICATION_SYSTEM_KEYS: Record<string, string> = { 'iothub-outputname': '$.on' }

function text(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined
  if (v instanceof Date) return v.toISOString()
  if (Buffer.isBuffer(v)) return v.toString('utf8')
  if (typeof v === 'object') return JSON.stringify(v)
  return String(v)
}

function expiryText(v: unknown): string | undefined {
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? undefined : v.toISOString()
  if (typeof v === 'number' && Number.isFinite(v) && v > 0) return new Date(v).toISOString()
  return undefined
}

export interface DeviceTelemetry {
  bag: string
  body: Buffer
  /** as Azure counts toward the 256 KB limit: the body, and names and values of properties */
  size: number
}

/** A message a device sent on its events link. */
export function telemetryFromAmqp(msg: rhea.Message): DeviceTelemetry {
  const props = clientKeyed()
  const system: [string, unknown][] = [
    ['$.mid', idText(msg.message_id)], ['$.cid', idText(msg.correlation_id)], ['$.uid', text(msg.user_id)],
    ['$.ct', msg.content_type], ['$.ce', msg.content_encoding], ['$.exp', expiryText(msg.absolute_expiry_time)],
  ]
  for (const [k, v] of Object.entries((msg.message_annotations ?? {}) as Record<string, unknown>)) {
    if (Object.hasOwn(ANNOTATION_KEYS, k)) system.push([ANNOTATION_KEYS[k]!, text(v)])
  }
  for (const [k, v] of system) if (v !== undefined && v !== null && v !== '') props[k] = String(v)
  for (const [k, v] of Object.entries((msg.application_properties ?? {}) as Record<string, unknown>)) {
    const value = text(v)
    if (value === undefined) continue
    props[Object.hasOwn(APPLICATION_SYSTEM_KEYS, k) ? APPLICATION_SYSTEM_KEYS[k]! : k] = value
  }
  const bag = formatPropertyBag(props)
  const body = bodyBytes(msg.body)
  let size = body.length
  for (const k in props) size += (k.startsWith('$.') ? 0 : Buffer.byteLength(k)) + Buffer.byteLength(props[k]!)
  return { bag, body, size }
}

/** `devices/{id}/messages/devicebound/{bag}` and its payload, as the device SDK reads a C2D message. */
export function c2dToAmqp(topic: string, payload: Uint8Array, dup: boolean): rhea.Message {
  const slash = topic.indexOf('/messages/devicebound/')
  const { system, properties } = parsePropertyBag(slash < 0 ? '' : topic.slice(slash + '/messages/devicebound/'.length))
  const application: Record<string, string> = { ...properties }
  const msg: rhea.Message = { body: rhea.message.data_section(Buffer.from(payload)), application_properties: application }
  if (system['message-id']) msg.message_id = system['message-id']
  if (system['correlation-id']) msg.correlation_id = system['correlation-id']
  if (system['user-id']) msg.user_id = Buffer.from(system['user-id']) as unknown as string
  if (system.to) msg.to = system.to
  if (system['content-type']) msg.content_type = system['content-type']
  if (system['content-encoding']) msg.content_encoding = system['content-encoding']
  if (system['absolute-expiry-time']) msg.absolute_expiry_time = new Date(system['absolute-expiry-time'])
  // a redelivery: another consumer (or this one, before) may have seen it
  if (dup) msg.first_acquirer = false
  return msg
}

export type TwinPush =
  | { kind: 'answer'; rid: string; status: number; version?: number }
  | { kind: 'desired'; version: number }

/** A shard's twin topic: an answer to a request (`$iothub/twin/res/{status}/?$rid=`) or a desired-properties patch. */
export function parseTwinTopic(topic: string): TwinPush | undefined {
  const query = topicQuery(topic)
  const version = query?.get('$version')
  if (topic.startsWith(TWIN_RESPONSE_PREFIX)) {
    const status = Number(topic.slice(TWIN_RESPONSE_PREFIX.length, topic.indexOf('/', TWIN_RESPONSE_PREFIX.length)))
    const rid = query?.get('$rid')
    if (!rid || !Number.isInteger(status)) return undefined
    return { kind: 'answer', rid, status, ...(version !== undefined ? { version: Number(version) } : {}) }
  }
  if (topic.startsWith('$iothub/twin/PATCH/properties/desired/')) return { kind: 'desired', version: Number(version ?? 0) }
  return undefined
}
