// Bodies of twin change and lifecycle events (lifecycle-events.md): an update carries the twin
// version and only the changed sections and keys (with their `$metadata` and the section's
// `$version`; deletions as null); a replace and the lifecycle events carry the whole twin.
import type { RouteSource } from '../src/routing/routing-config.js'
import type { HubEventInput } from './hub-events.js'
import type { TwinDoc, TwinStore } from './twin-store.js'
import { splitIdentityKey } from '../src/shard-protocol.js'

export interface HubEventSink {
  wants(source: RouteSource): boolean
  emit(e: HubEventInput): void
}

type Json = Record<string, unknown>
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v)

/** The whole twin as the service sees it, for replace and lifecycle events. */
export function twinSnapshot(twins: TwinStore, doc: TwinDoc): Json {
  const core = twins.core(doc)
  const { deviceId, moduleId } = splitIdentityKey(doc.deviceId)
  return { deviceId, ...(moduleId ? { moduleId } : {}), etag: core.etag, version: core.version, ...(Object.keys(core.tags).length ? { tags: core.tags } : {}), properties: core.properties }
}

/** The changed keys of a section with their metadata, `$version` of the section after the change. */
function changedSection(section: TwinDoc['desired'], patch: Json): Json {
  const meta: Json = { $lastUpdated: section.$metadata.$lastUpdated }
  if (section.$metadata.$lastUpdatedVersion !== undefined) meta.$lastUpdatedVersion = section.$metadata.$lastUpdatedVersion
  for (const k of Object.keys(patch)) if (section.$metadata[k] !== undefined) meta[k] = section.$metadata[k]
  return { ...patch, $metadata: meta, $version: section.$version }
}

export function twinChangeBody(doc: TwinDoc, changed: { tags?: Json; desired?: Json; reported?: Json }): Json {
  const body: Json = { version: doc.version }
  if (isObject(changed.tags)) body.tags = changed.tags
  const properties: Json = {}
  if (isObject(changed.desired)) properties.desired = changedSection(doc.desired, changed.desired)
  if (isObject(changed.reported)) properties.reported = changedSection(doc.reported, changed.reported)
  if (Object.keys(properties).length) body.properties = properties
  return body
}
