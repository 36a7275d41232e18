// Non-telemetry events (lifecycle-events.md): twin changes, device lifecycle and connection state,
// built as stored messages (property bag + extra application properties + JSON body) so they go
// through routing and into endpoints exactly like telemetry. Built only when a route wants them.
import { randomBytes } from 'node:crypto'
import type { RawEvent, Sender } from '../src/events/segment-codec.js'
import { MESSAGE_SOURCE } from './message-router.js'
import type { RouteSource } from '../src/routing/routing-config.js'

/** Azure's timestamps carry 7 fractional digits. */
function timestamp(ms: number): string {
  return new Date(ms).toISOString().replace('Z', '0000Z')
}

const HUB_AUTH = '{"scope":"hub","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}'

export interface HubEventInput {
  source: RouteSource
  deviceId: string
  /** set for a module's events: stamped as `iothub-connection-module-id` and the `moduleId` property */
  moduleId?: string
  generationId: string
  opType: string
  schema: string
  body: unknown
}

export function hubEvent(hubName: string, e: HubEventInput, now = Date.now()): RawEvent {
  const sender: Sender = e.moduleId ? { deviceId: e.deviceId, moduleId: e.moduleId, generationId: e.generationId, authMethod: HUB_AUTH } : { deviceId: e.deviceId, generationId: e.generationId, authMethod: HUB_AUTH }
  const bag = `$.ct=application%2Fjson&$.ce=utf-8&$.cid=${randomBytes(5).toString('hex')}&$.uid=${encodeURIComponent(hubName)}`
  const extra: Record<string, string> = {
    hubName, deviceId: e.deviceId, ...(e.moduleId ? { moduleId: e.moduleId } : {}), operationTimestamp: timestamp(now), opType: e.opType, 'iothub-message-schema': e.schema,
  }
  return { t: now, sender, bag, extra, body: Buffer.from(JSON.stringify(e.body)), src: MESSAGE_SOURCE[e.source] }
}

/**
 * The connection-state sequence number: 64 hex characters, strictly increasing per device (time,
 * then a counter), compared as strings by readers.
 */
let counter = 0n
export function connectionSequenceNumber(now = Date.now()): string {
  counter++
  return ((BigInt(now) << 128n) | counter).toString(16).padStart(64, '0')
}
