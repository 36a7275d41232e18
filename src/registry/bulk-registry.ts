// Bulk registry operations, `POST /devices` (identity-registry.md "Bulk registry"): up to 100
// ExportImportDevice items, each with its own importMode, applied one by one. A failing item is
// reported in `errors` and the others go on; only a malformed request as a whole fails it.
import { HubError } from '../rest/hub-error.js'
import type { DeviceRegistry } from './device-registry.js'

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

/** The identity fields of an item, as `PUT /devices/{id}` takes them. */
function identityOf(item: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { deviceId: item.id }
  for (const k of ['status', 'statusReason', 'authentication', 'capabilities', 'deviceScope', 'parentScopes'] as const) if (item[k] !== undefined) out[k] = item[k]
  return out
}

/** The twin fields of an item, or undefined when it carries none. */
function twinPatchOf(item: Record<string, unknown>): Record<string, unknown> | undefined {
  const desired = (item.properties as { desired?: unknown } | undefined)?.desired
  if (item.tags === undefined && desired === undefined) return undefined
  return { ...(item.tags !== undefined ? { tags: item.tags } : {}), ...(desired !== undefined ? { properties: { desired } } : {}) }
}

export class BulkRegistry {
  constructor(private readonly registry: DeviceRegistry, private readonly patchTwin: TwinPatcher) {}

  /** Applies every item in order; a failed item is reported and the next one still runs. */
  async apply(body: unknown): Promise<BulkResult> {
    const items = checkRequest(body)
    const errors: BulkItemError[] = []
    for (const item of items) {
      const deviceId = item.id as string
      try {
        if (item.moduleId !== undefined) throw new HubError(400004, 'modules are not taken by bulk operations here: use PUT /devices/{id}/modules/{moduleId}')
        const mode = importModeOf(item.importMode)
        if (!mode) throw new HubError(400004, `importMode ${JSON.stringify(item.importMode)} is not one of ${IMPORT_MODES.join(', ')}`)
        await this.applyOne(deviceId, mode, item)
      } catch (e) {
        if (!(e instanceof HubError)) throw e
        errors.push({ deviceId, errorCode: e.codeName, errorStatus: e.message })
      }
    }
    return { isSuccessful: errors.length === 0, errors, warnings: [] }
  }

  private async applyOne(deviceId: string, mode: ImportMode, item: Record<string, unknown>): Promise<void> {
    const exists = this.registry.get(deviceId) !== undefined
    const twin = twinPatchOf(item)
    switch (mode) {
      case 'create':
        await this.registry.put(deviceId, identityOf(item), undefined)
        break
      case 'createOrUpdate':
        await this.registry.put(deviceId, identityOf(item), exists ? '*' : undefined)
        break
      case 'update': // If-Match * on a missing device is 404001 DeviceNotFound
        await this.registry.put(deviceId, identityOf(item), '*')
        break
      case 'updateIfMatchETag':
        await this.registry.put(deviceId, identityOf(item), etagOf(item, 'eTag'))
        break
      case 'createOrUpdateIfMatchETag':
        await this.registry.put(deviceId, identityOf(item), exists ? etagOf(item, 'eTag') : undefined)
        break
      case 'delete':
        await this.registry.delete(deviceId, '*')
        return
      case 'deleteIfMatchETag':
        await this.registry.delete(deviceId, etagOf(item, 'eTag'))
        return
      case 'updateTwin':
      case 'updateTwinIfMatchETag':
        if (!exists) throw new HubError(404001, `Device ${deviceId} not registered`)
        await this.patchTwin(deviceId, twin ?? {}, mode === 'updateTwin' ? null : etagOf(item, 'twinETag'))
        return
    }
    // a created or updated identity takes the item's tags and desired properties too
    if (twin) await this.patchTwin(deviceId, twin, null)
  }
}
