// Device twins of the devices a shard owns: tags, desired and reported properties with `$version`
// and `$metadata`, the twin version and etag. One LMDB record per device (`twins`), with an
// in-memory copy; a write resolves once LMDB committed it.
import type { Database } from 'lmdb'
import { checkEtag } from '../src/registry/device-registry.js'
import { HubError } from '../src/rest/hub-error.js'
import { checkContent, checkSize, isPlainObject, type Section } from './twin-rules.js'

type Json = Record<string, unknown>
interface Meta { $lastUpdated: string; $lastUpdatedVersion?: number; [k: string]: unknown }

export interface TwinDoc {
  deviceId: string
  generationId: string | null
  version: number
  tags: Json
  /** values plus `$metadata` and `$version`, as the service reads them */
  desired: Json & { $metadata: Meta; $version: number }
  reported: Json & { $metadata: Meta; $version: number }
  /** the automatic configurations that target it: `{id: {status: 'Applied' | 'Targeted'}}` */
  configurations?: ConfigurationStatuses
  /** the scheduled jobs whose patch this twin took last (so a job resumed after a crash applies its patch once) */
  jobs?: string[]
}

/** Job ids a twin remembers: more than the active jobs a hub runs at once (10). */
const REMEMBERED_JOBS = 16

export type ConfigurationStatuses = Record<string, { status: 'Applied' | 'Targeted' }>

/** What the service side gets (the edge adds the identity fields). */
export interface TwinCore {
  etag: string
  version: number
  tags: Json
  properties: { desired: Json; reported: Json }
  configurations?: ConfigurationStatuses
}

/** Azure's twin timestamps carry 7 fractional digits. */
function timestamp(ms = Date.now()): string {
  return new Date(ms).toISOString().replace('Z', '0000Z')
}

/** base64 of the 8-byte big-endian twin version, as Azure's twin etags look. */
export function twinEtag(version: number): string {
  const b = Buffer.alloc(8)
  b.writeBigUInt64BE(BigInt(version))
  return b.toString('base64')
}

function emptySection(now: string, withVersion: boolean): TwinDoc['desired'] {
  return { $metadata: withVersion ? { $lastUpdated: now, $lastUpdatedVersion: 1 } : { $lastUpdated: now }, $version: 1 }
}

/** JSON merge-patch of `patch` into `target`, keeping `meta` (the `$metadata` tree) in step. */
function mergeWithMetadata(target: Json, meta: Meta, patch: Json, now: string, version: number | undefined): void {
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) {
      delete target[k]
      delete meta[k]
    } else if (isPlainObject(v)) {
      if (!isPlainObject(target[k])) target[k] = {}
      if (!isPlainObject(meta[k]) || !isPlainObject(target[k])) meta[k] = { $lastUpdated: now }
      mergeWithMetadata(target[k] as Json, meta[k] as Meta, v, now, version)
    } else {
      target[k] = v
      meta[k] = version === undefined ? { $lastUpdated: now } : { $lastUpdated: now, $lastUpdatedVersion: version }
    }
  }
  meta.$lastUpdated = now
  if (version !== undefined) meta.$lastUpdatedVersion = version
}

/** The `$metadata` tree for a whole new document. */
function metadataFor(doc: Json, now: string, version: number | undefined): Meta {
  const meta: Meta = version === undefined ? { $lastUpdated: now } : { $lastUpdated: now, $lastUpdatedVersion: version }
  for (const [k, v] of Object.entries(doc)) {
    meta[k] = isPlainObject(v) ? metadataFor(v, now, version) : version === undefined ? { $lastUpdated: now } : { $lastUpdated: now, $lastUpdatedVersion: version }
  }
  return meta
}

function withoutNulls(doc: Json): Json {
  const out: Json = {}
  for (const [k, v] of Object.entries(doc)) {
    if (v === null) continue
    out[k] = isPlainObject(v) ? withoutNulls(v) : v
  }
  return out
}

/**
 * A fetched twin written back (as the C# and Python SDKs do) carries read-only `$metadata` and
 * `$version` in desired: the service's input ignores them, as Azure does (a device's input keeps
 * the strict rule: `$` keys are refused).
 */
function withoutReadOnly(section: Json): Json {
  const out: Json = {}
  for (const [k, v] of Object.entries(section)) {
    if (k === '$metadata' || k === '$version') continue
    out[k] = isPlainObject(v) ? withoutReadOnly(v) : v
  }
  return out
}

/** A patch that removes every property of a section: `{"desired": null}` / `{"tags": null}` in a PATCH. */
function removeAll(section: Json): Json {
  const out: Json = {}
  for (const k of Object.keys(section)) if (k !== '$metadata' && k !== '$version') out[k] = null
  return out
}

function values(section: Json): Json {
  const out: Json = {}
  for (const [k, v] of Object.entries(section)) if (k !== '$metadata' && k !== '$version') out[k] = v
  return out
}

/** Applies a patch to a copy of a section, checks the result's size, and returns it. */
function patched(name: Section, section: TwinDoc['desired'], patch: Json, now: string, versioned: boolean): TwinDoc['desired'] {
  const next = structuredClone(section)
  const version = next.$version + 1
  const meta = next.$metadata
  delete (next as Json).$metadata
  delete (next as Json).$version
  mergeWithMetadata(next, meta, patch, now, versioned ? version : undefined)
  checkSize(name, next)
  return Object.assign(next, { $metadata: meta, $version: version })
}

export class TwinStore {
  /** the newest version of each twin, committed or not: the next change builds on it */
  private readonly cache = new Map<string, TwinDoc>()
  /** while changes of a twin are committing: its last committed version, which readers get */
  private readonly committedWhilePending = new Map<string, { doc: TwinDoc; pending: number }>()

  constructor(private readonly db: Database) {}

  private fresh(deviceId: string, generationId: string | null): TwinDoc {
    const now = timestamp()
    return { deviceId, generationId, version: 1, tags: {}, desired: emptySection(now, true), reported: emptySection(now, false) }
  }

  /** The device's twin; a device that existed before twins did gets an empty one. */
  get(deviceId: string): TwinDoc {
    let doc = this.cache.get(deviceId)
    if (!doc) {
      doc = (this.db.get(deviceId) as TwinDoc | undefined) ?? this.fresh(deviceId, null)
      this.cache.set(deviceId, doc)
    }
    return doc
  }

  /**
   * The twin as committed: what reads answer (a device's GET, the service's GET, routing's $twin),
   * so nobody sees a change a crash could still undo.
   */
  read(deviceId: string): TwinDoc {
    return this.committedWhilePending.get(deviceId)?.doc ?? this.get(deviceId)
  }

  /** Created with the device; a new device under an old id (new generation) gets a new twin. */
  ensure(deviceId: string, generationId: string): Promise<unknown> | undefined {
    const stored = this.cache.get(deviceId) ?? (this.db.get(deviceId) as TwinDoc | undefined)
    if (stored && (stored.generationId === generationId || stored.generationId === null)) {
      if (stored.generationId === null) stored.generationId = generationId
      this.cache.set(deviceId, stored)
      return undefined
    }
    const doc = this.fresh(deviceId, generationId)
    this.cache.set(deviceId, doc)
    return this.db.put(deviceId, doc)
  }

  remove(deviceId: string): Promise<unknown> {
    this.cache.delete(deviceId)
    return this.db.remove(deviceId)
  }

  core(doc: TwinDoc): TwinCore {
    const core: TwinCore = { etag: twinEtag(doc.version), version: doc.version, tags: doc.tags, properties: { desired: doc.desired, reported: doc.reported } }
    if (doc.configurations) core.configurations = doc.configurations
    return core
  }

  /** The device's view (MQTT GET): bare desired and reported with their `$version`s, no tags, no metadata. */
  deviceView(doc: TwinDoc): { desired: Json; reported: Json } {
    return {
      desired: { ...values(doc.desired), $version: doc.desired.$version },
      reported: { ...values(doc.reported), $version: doc.reported.$version },
    }
  }

  /**
   * PATCH (merge, null deletes) or PUT (replace) of tags and desired properties from the service.
   * Returns the write and, when desired properties changed, what to push to the device.
   */
  updateFromService(deviceId: string, mode: 'patch' | 'replace', body: unknown, ifMatch: string | undefined, jobId?: string): { doc: TwinDoc; written: Promise<unknown>; desiredPush: Json | undefined } {
    if (!isPlainObject(body)) throw new HubError(400004, 'the body must be a twin object')
    const doc = this.get(deviceId)
    // a job's patch that this twin already took (the job resumed after a crash): nothing to do
    if (jobId !== undefined && doc.jobs?.includes(jobId)) return { doc, written: Promise.resolve(), desiredPush: undefined }
    if (ifMatch !== undefined) checkEtag(ifMatch, twinEtag(doc.version))
    const tags = body.tags
    const properties = body.properties
    if (properties !== undefined && properties !== null && !isPlainObject(properties)) throw new HubError(400004, 'properties must be an object')
    const rawDesired = isPlainObject(properties) ? properties.desired : undefined
    const isPatch = mode === 'patch'
    // null in a PATCH removes the whole section (tags, or every desired property)
    const desired = rawDesired === null ? (isPatch ? removeAll(doc.desired) : {}) : isPlainObject(rawDesired) ? withoutReadOnly(rawDesired) : rawDesired
    if (tags !== undefined && tags !== null) checkContent('tags', tags, isPatch)
    if (desired !== undefined && desired !== null) checkContent('desired', desired, isPatch)
    const now = timestamp()
    let nextTags = doc.tags
    if (isPlainObject(tags)) {
      nextTags = isPatch ? mergePlain(structuredClone(doc.tags), tags) : withoutNulls(tags)
      checkSize('tags', nextTags)
    } else if (tags === null) {
      nextTags = {}
    }
    let nextDesired = doc.desired
    let desiredPush: Json | undefined
    if (isPlainObject(desired)) {
      if (isPatch) {
        nextDesired = patched('desired', doc.desired, desired, now, true)
        desiredPush = { ...desired, $version: nextDesired.$version }
      } else {
        const content = withoutNulls(desired)
        checkSize('desired', content)
        const version = doc.desired.$version + 1
        nextDesired = Object.assign(content, { $metadata: metadataFor(content, now, version), $version: version })
        desiredPush = { ...values(nextDesired), $version: version }
      }
    }
    const changed = nextTags !== doc.tags || nextDesired !== doc.desired
    if (!changed) return { doc, written: Promise.resolve(), desiredPush: undefined }
    const next: TwinDoc = { ...doc, version: doc.version + 1, tags: nextTags, desired: nextDesired }
    if (jobId !== undefined) next.jobs = [...(doc.jobs ?? []).slice(1 - REMEMBERED_JOBS), jobId]
    return { doc: next, written: this.write(next), desiredPush }
  }

  /**
   * An automatic configuration's work on this twin: its statuses, and (when a configuration is
   * applied for the first time) its desired-properties patch. Nothing is written when nothing changes.
   */
  configure(deviceId: string, patch: Json | null, statuses: ConfigurationStatuses | null): { doc: TwinDoc | undefined; written: Promise<unknown>; desiredPush: Json | undefined } {
    // a twin the scan saw may be gone since (its device or module deleted): it is not made again, or
    // a new one under the id would inherit it. Twins are made with their device or module.
    const doc = this.cache.get(deviceId) ?? (this.db.get(deviceId) as TwinDoc | undefined)
    if (!doc) return { doc: undefined, written: Promise.resolve(), desiredPush: undefined }
    this.cache.set(deviceId, doc)
    // null statuses: an IoT Edge deployment writing a module's desired properties, leaving its statuses
    const same = statuses === null || JSON.stringify(doc.configurations ?? {}) === JSON.stringify(statuses)
    if (same && !patch) return { doc, written: Promise.resolve(), desiredPush: undefined }
    const next: TwinDoc = { ...doc, version: doc.version + 1 }
    if (statuses !== null) {
      if (Object.keys(statuses).length > 0) next.configurations = statuses
      else delete next.configurations
    }
    let desiredPush: Json | undefined
    if (patch) {
      checkContent('desired', patch, true)
      next.desired = patched('desired', doc.desired, patch, timestamp(), true)
      desiredPush = { ...patch, $version: next.desired.$version }
    }
    return { doc: next, written: this.write(next), desiredPush }
  }

  /** A reported-properties patch from the device (merge, null deletes). */
  patchReported(deviceId: string, patch: unknown): { doc: TwinDoc; written: Promise<unknown> } {
    checkContent('reported', patch, true)
    const doc = this.get(deviceId)
    const reported = patched('reported', doc.reported, patch as Json, timestamp(), false)
    const next: TwinDoc = { ...doc, version: doc.version + 1, reported }
    return { doc: next, written: this.write(next) }
  }

  /**
   * The cache runs ahead of the store so that the next change builds on this one; if the commit
   * fails, the cached copy is dropped and the next read sees what is stored.
   */
  private write(next: TwinDoc): Promise<unknown> {
    const id = next.deviceId
    const pending = this.committedWhilePending.get(id)
    if (pending) pending.pending++
    else this.committedWhilePending.set(id, { doc: this.get(id), pending: 1 })
    this.cache.set(id, next)
    const settled = (committed: boolean) => {
      const p = this.committedWhilePending.get(id)
      if (!p) return
      if (committed) p.doc = next
      if (--p.pending === 0) this.committedWhilePending.delete(id)
    }
    return this.db.put(id, next).then(() => settled(true), (e: unknown) => {
      settled(false)
      if (this.cache.get(id) === next) this.cache.delete(id)
      throw e
    })
  }
}

/** Merge-patch without metadata (tags). */
function mergePlain(target: Json, patch: Json): Json {
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete target[k]
    else if (isPlainObject(v)) target[k] = mergePlain(isPlainObject(target[k]) ? target[k] as Json : {}, v)
    else target[k] = v
  }
  return target
}
