// A built-in endpoint event as an Event Hubs AMQP message: standard properties in the properties
// section, IoT Hub system properties and Event Hubs' x-opt-* fields as message annotations,
// application properties as they were sent, the body as a data section.
import rhea from 'rhea'
import type { StoredEvent } from '../events/segment-codec.js'

/** System properties that have a home in the AMQP properties section. */
const PROPERTIES: Record<string, string> = {
  'message-id': 'message_id',
  'correlation-id': 'correlation_id',
  'content-type': 'content_type',
  'content-encoding': 'content_encoding',
  to: 'to',
}

export function eventMessage(sequence: number, offset: number, e: StoredEvent): rhea.Message {
  const properties: Record<string, unknown> = {}
  const annotations: Record<string, unknown> = {
    'x-opt-sequence-number': rhea.types.wrap_long(sequence),
    'x-opt-offset': String(offset),
    'x-opt-enqueued-time': new Date(e.t),
    'x-opt-partition-key': e.s['iothub-connection-device-id'],
  }
  for (const [k, v] of Object.entries(e.s)) {
    const field = Object.hasOwn(PROPERTIES, k) ? PROPERTIES[k] : undefined
    if (field) properties[field] = v
    else if (k === 'user-id') properties.user_id = Buffer.from(v)
    else if (k === 'absolute-expiry-time') properties.absolute_expiry_time = new Date(v)
    else if (k === 'iothub-enqueuedtime') annotations[k] = new Date(e.t)
    else annotations[k] = v
  }
  return {
    ...properties,
    message_annotations: annotations,
    application_properties: e.p,
    body: rhea.message.data_section(Buffer.from(e.b.buffer, e.b.byteOffset, e.b.byteLength)),
  } as rhea.Message
}
