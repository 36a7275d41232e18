// One routed message as storage and webhook endpoints write it (the record Azure's storage endpoint
// writes in JSON encoding): EnqueuedTimeUtc, Properties, SystemProperties, Body.
import type { StoredEvent } from '../src/events/segment-codec.js'
import { bodyEncoding, canonicalSystemName } from '../src/routing/route-message.js'
import { jsonDeeperThan } from '../src/json-depth.js'

// system properties as Azure's storage records name them (routing keywords)
const RECORD_NAMES: Record<string, string> = {
  messageid: 'messageId', correlationid: 'correlationId', userid: 'userId', contenttype: 'contentType', contentencoding: 'contentEncoding',
  connectiondeviceid: 'connectionDeviceId', connectionmoduleid: 'connectionModuleId', connectionauthmethod: 'connectionAuthMethod', connectiondevicegenerationid: 'connectionDeviceGenerationId',
  enqueuedtime: 'enqueuedTime', 'iothub-creation-time-utc': 'iothub-creation-time-utc',
}

/** One message as a storage (and webhook) record: EnqueuedTimeUtc, Properties, SystemProperties, Body. */
export function messageRecord(e: StoredEvent): Record<string, unknown> {
  const system: Record<string, string> = {}
  const canonical = new Map<string, string>()
  for (const [k, v] of Object.entries(e.s)) {
    const c = canonicalSystemName(k)
    canonical.set(c, v)
    system[RECORD_NAMES[c] ?? k] = v
  }
  const buf = Buffer.from(e.b.buffer, e.b.byteOffset, e.b.byteLength)
  // JSON bodies stay JSON when routing could read them (content type JSON, UTF-8); else base64
  let body: unknown = buf.toString('base64')
  // too deep to write back out as JSON: base64 like any other body
  if (bodyEncoding(canonical) === 'utf-8' && !jsonDeeperThan(buf)) {
    try { body = JSON.parse(buf.toString('utf8')) } catch { /* not JSON after all: base64 */ }
  }
  return { EnqueuedTimeUtc: new Date(e.t).toISOString().replace('Z', '0000Z'), Properties: e.p, SystemProperties: system, Body: body }
}
