// Bulk registry operations, `POST /devices` (identity-registry.md "Bulk registry"): up to 100
// ExportImportDevice items, each with its own importMode, applied one by one. A failing item is
// reported in `errors` and the others go on; only a malformed request as a whole fails it. Import
// jobs apply each line of their file through the same per-item logic (applyItem), modules included.
import { checkContent, checkSize, isPlainObject } from '../../shards/twin-rules.js'
import { HubError } from '../rest/hub-error.js'
import type { DeviceRegistry } from './device-registry.js'
import type { ModuleRegistry } from './module-registry.js'

export const MAX_BULK_DEVICES = 100

const IMPORT_MODES = ['create', 'createOrUpdate', 'update', 'updateIfMatchETag', 'createOrUpdateIfMatchETag', 'delete', 'deleteIfMatchETag', 'updateTwin', 'updateTwinIfMatchETag'] as const
export type ImportMode = (typeof IMPORT_MODES)[number]

export interface BulkItemError { deviceId: string; moduleId?: string; errorCode: string; errorStatus: string }
export interface BulkResult { isSuccessful: boolean; errors: BulkItemError[]; warnings: BulkItemError[] }

/** What the twin side offers bulk items: a patch of tags and desired properties (`ifMatch`: the twin's etag). */
export type TwinPatcher = (deviceId: string, patch: Record<string, unknown>, ifMatch: string | null) => Promise<unknown>

/** The SDKs spell modes as `create`, `Update`, `DeleteIfMatchETag`: compared without case. */
function importModeOf(value: unknown): ImportMode | undefined {
  if (value === undefined || value === null) return 'createOrUpdate'
  return IMPORT_MODES.find((m) => typeof value === 'string' && m.toLowerCase() === value.toLowerCase())
}

/** Checks the request as a whole: an array of 1..100 objects with distinct ids. */
function checkRequest(body: unknown): Record<string, unknown>[] {
  if (!Array.isArray(body)) throw new HubError(400004, 'the body must be an array of devices')
  if (body.length === 0) throw new HubError(400004, 'the body must name at least one device')
  if (body.length > MAX_BULK_DEVICES) throw new HubError(413002, `at most ${MAX_BULK_DEVICES} devices per bulk operation (got ${body.length})`)
  const seen = new Set<string>()
  for (const item of body) {
    if (typeof item !== 'object' || item === null || Array.isArray(item)) throw new HubError(400004, 'every item must be a device object')
    const id = (item as Record<string, unknown>).id
    if (typeof id !== 'string' || id === '') throw new HubError(400004, 'every item needs an "id"')
    if (seen.has(id)) throw new HubError(400011, `device '${id}' is defined more than once`)
    seen.add(id)
  }
  return body as Record<string, unknown>[]
}

/** Azure names it `eTag`; azure-iothub sends the device's `etag` as it is (Azure reads JSON names without case). */
function etagOf(item: Record<string, unknown>, field: 'eTag' | 'twinETag'): string {
  const v = item[field] ?? item[field.toLowerCase()]
  if (typeof v !== 'string' || v === '') throw new HubError(400004, `importMode needs "${field}"`)
  return v
}

/** The identity fields of a device item, as `PUT /devices/{id}` takes them. */
function identityOf(item: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { deviceId: item.id }
  for (const k of ['status', 'statusReason', 'authentication', 'capabilities', 'deviceScope', 'parentScopes'] as const) if (item[k] !== undefined) out[k] = item[k]
  return out
}

/** The identity fields of a module item, as `PUT /devices/{id}/modules/{moduleId}` takes them. */
function moduleIdentityOf(item: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { deviceId: item.id, moduleId: item.moduleId }
  for (const k of ['authentication', 'managedBy'] as const) if (item[k] !== undefined) out[k] = item[k]
  return out
}

/** The twin fields of an item, or undefined when it carries none. */
function twinPatchOf(item: Record<string, unknown>): Record<string, unknown> | undefined {
  const desired = (item.properties as { desired?: unknown } | undefined)?.desired
  if (item.tags === undefined && desired === undefined) return undefined
  return { ...(item.tags !== undefined ? { tags: item.tags } : {}), ...(desired !== undefined ? { properties: { desired } } : {}) }
}

/** The twin rules (shards/twin-rules.ts) on an item's tags and desired properties (read-only `$metadata` and `$version` aside). */
function checkTwinPatch(twin: Record<string, unknown>): void {
  const tags = twin.tags
  if (tags !== undefined && tags !== null) { checkContent('tags', tags, true); checkSize('tags', tags as Record<string, unknown>) }
  const desired = (twin.properties as { desired?: unknown } | undefined)?.desired
  if (desired !== undefined && desired !== null) {
    if (!isPlainObject(desired)) throw new HubError(400004, 'properties.desired must be an object')
    const { $metadata: _m, $version: _v, ...content } = desired
    checkContent('desired', content, true)
    checkSize('desired', content)
  }
}

/** What an item's importMode acts on: a device or a module, each with its registry's calls. */
interface ItemTarget {
  exists: boolean
  identity: Record<string, unknown>
  put(identity: Record<string, unknown>, ifMatch: string | undefined): Promise<unknown>
  remove(ifMatch: string): Promise<unknown>
  patchTwin(patch: Record<string, unknown>, ifMatch: string | null): Promise<unknown>
  notFound(): HubError
}

/** Module items (import jobs take them; `POST /devices` does not yet): the module registry and the module twin's patch. */
export interface ModuleTargets {
  registry: ModuleRegistry
  patchTwin: (deviceId: string, moduleId: string, patch: Record<string, unknown>, ifMatch: string | null) => Promise<unknown>
}

/** A refused item as the bulk answer and the import error log report it. */
export function itemError(item: Record<string, unknown>, e: HubError): BulkItemError {
  const deviceId = typeof item.id === 'string' ? item.id : ''
  return { deviceId, ...(typeof item.moduleId === 'string' ? { moduleId: item.moduleId } : {}), errorCode: e.codeName, errorStatus: e.message }
}

export class BulkRegistry {
  constructor(private readonly registry: DeviceRegistry, private readonly patchTwin: TwinPatcher, private readonly modules?: ModuleTargets) {}

  /** Applies every item in order; a failed item is reported and the next one still runs. */
  async apply(body: unknown): Promise<BulkResult> {
    const items = checkRequest(body)
    const errors: BulkItemError[] = []
    for (const item of items) {
      const e = await this.applyItem(item)
      if (e) errors.push(itemError(item, e))
    }
    return { isSuccessful: errors.length === 0, errors, warnings: [] }
  }

  /**
   * One ExportImportDevice item with its importMode (default createOrUpdate): its refusal is
   * returned, not thrown, so a caller reports it and goes on. What is not a HubError still throws.
   */
  async applyItem(item: Record<string, unknown>): Promise<HubError | undefined> {
    try {
      if (typeof item.id !== 'string' || item.id === '') throw new HubError(400004, 'the item needs an "id"')
      const target = this.targetOf(item)
      const mode = importModeOf(item.importMode)
      if (!mode) throw new HubError(400004, `importMode ${JSON.stringify(item.importMode)} is not one of ${IMPORT_MODES.join(', ')}`)
      await this.applyOne(mode, item, target)
      return undefined
    } catch (e) {
      if (!(e instanceof HubError)) throw e
      return e
    }
  }

  private targetOf(item: Record<string, unknown>): ItemTarget {
    const deviceId = item.id as string
    if (item.moduleId === undefined) {
      return {
        exists: this.registry.get(deviceId) !== undefined,
        identity: identityOf(item),
        put: (identity, ifMatch) => this.registry.put(deviceId, identity, ifMatch),
        remove: (ifMatch) => this.registry.delete(deviceId, ifMatch),
        patchTwin: (patch, ifMatch) => this.patchTwin(deviceId, patch, ifMatch),
        notFound: () => new HubError(404001, `Device ${deviceId} not registered`),
      }
    }
    const modules = this.modules
    if (!modules) throw new HubError(400004, 'modules are not taken by bulk operations here: use PUT /devices/{id}/modules/{moduleId}')
    const moduleId = item.moduleId
    if (typeof moduleId !== 'string' || moduleId === '') throw new HubError(400004, '"moduleId" must be a non-empty string')
    return {
      exists: modules.registry.get(deviceId, moduleId) !== undefined,
      identity: moduleIdentityOf(item),
      put: (identity, ifMatch) => modules.registry.put(deviceId, moduleId, identity, ifMatch),
      remove: (ifMatch) => modules.registry.delete(deviceId, moduleId, ifMatch),
      patchTwin: (patch, ifMatch) => modules.patchTwin(deviceId, moduleId, patch, ifMatch),
      notFound: () => new HubError(404010, `Module ${moduleId} on device ${deviceId} not found`),
    }
  }

  private async applyOne(mode: ImportMode, item: Record<string, unknown>, target: ItemTarget): Promise<void> {
    const { exists, identity } = target
    const twin = twinPatchOf(item)
    // checked before the identity is written: an item whose twin fails is not left half applied
    if (twin) checkTwinPatch(twin)
    switch (mode) {
      case 'create':
        await target.put(identity, undefined)
        break
      case 'createOrUpdate':
        await target.put(identity, exists ? '*' : undefined)
        break
      case 'update': // If-Match * on a missing identity is 404001 DeviceNotFound (404010 for a module)
        await target.put(identity, '*')
        break
      case 'updateIfMatchETag':
        await target.put(identity, etagOf(item, 'eTag'))
        break
      case 'createOrUpdateIfMatchETag':
        await target.put(identity, exists ? etagOf(item, 'eTag') : undefined)
        break
      case 'delete':
        await target.remove('*')
        return
      case 'deleteIfMatchETag':
        await target.remove(etagOf(item, 'eTag'))
        return
      case 'updateTwin':
      case 'updateTwinIfMatchETag':
        if (!exists) throw target.notFound()
        await target.patchTwin(twin ?? {}, mode === 'updateTwin' ? null : etagOf(item, 'twinETag'))
        return
    }
    // a created or updated identity takes the item's tags and desired properties too
    if (twin) await target.patchTwin(twin, null)
  }
}
