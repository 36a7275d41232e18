// Module identities (identity-registry.md "Module identity JSON"): each belongs to a device, has its
// own keys (or thumbprints), an etag and `managedBy`, and no status of its own. Records live in LMDB
// `modules` under [deviceId, moduleId]; a change commits before memory shows it, and changes to one
// module run one after another. A device's deletion removes its modules (and a restart removes any a
// crash left without their device).
import type { Database, RootDatabase } from 'lmdb'
import { HubError } from '../rest/hub-error.js'
import { SerializedChanges } from './serialized-changes.js'
import type { WriteHealth } from '../store/write-health.js'
import { authenticationFrom, checkDeviceId, checkEtag, NEVER, randomGenerationId, type DeviceRecord, type DeviceRegistry, type PresenceView } from './device-registry.js'
import { moduleKey } from '../shard-protocol.js'

/** Azure documents no value; IoT Edge deployments allow 50 modules per device. */
export const MAX_MODULES_PER_DEVICE = 50

export interface ModuleRecord {
  deviceId: string
  moduleId: string
  generationId: string
  etag: string
  authentication: DeviceRecord['authentication']
  managedBy: string | null
}

/** Module ids follow the device id grammar (1-128 characters). */
export function checkModuleId(id: string): void {
  try {
    checkDeviceId(id)
  } catch {
    throw new HubError(400004, `ModuleId ${JSON.stringify(id)} is invalid: 1-128 ASCII letters, digits or - . % _ * ? ! ( ) , : = @ $ '`)
  }
}

export class ModuleRegistry {
  private readonly byDevice = new Map<string, Map<string, ModuleRecord>>()
  private etagCounter = Date.now() * 1000
  private readonly changes = new SerializedChanges()
  /** who is connected (the edge), asked under `{device}/{module}`; unset, every module reads as never connected */
  presence: PresenceView | undefined
  /** what else goes with deleted modules (their twins, in the device's shard); awaited before a DELETE answers */
  onRemoved?: (deviceId: string, moduleIds: string[]) => Promise<unknown>
  /** a module was created (its twin takes its generation, a lifecycle event may be routed) */
  onCreated?: (module: ModuleRecord) => void

  constructor(private readonly root: RootDatabase, private readonly db: Database, private readonly devices: DeviceRegistry, private readonly health?: WriteHealth) {
    const orphans: [string, string][] = []
    for (const { key, value } of db.getRange()) {
      const m = value as ModuleRecord
      if (!devices.get(m.deviceId)) { orphans.push(key as [string, string]); continue }
      this.modulesOf(m.deviceId, true).set(m.moduleId, m)
    }
    if (orphans.length > 0) void root.transaction(() => { for (const k of orphans) db.removeSync(k) }).catch(() => { /* removed on a later start */ })
    devices.onChange((e) => {
      if (e.kind === 'deleted') this.dropDevice(e.device.deviceId).catch(() => { /* a later start removes them */ })
    })
  }

  private modulesOf(deviceId: string, create = false): Map<string, ModuleRecord> {
    let m = this.byDevice.get(deviceId)
    if (!m) {
      m = new Map()
      if (create) this.byDevice.set(deviceId, m)
    }
    return m
  }

  private nextEtag(): string { return Buffer.from(String(++this.etagCounter)).toString('base64') }

  private async write(op: () => Promise<unknown>): Promise<void> {
    await (this.health ? this.health.run(op) : op())
  }

  private device(deviceId: string): DeviceRecord {
    const d = this.devices.get(deviceId)
    if (!d) throw new HubError(404001, `Device ${deviceId} not registered`)
    return d
  }

  get(deviceId: string, moduleId: string): ModuleRecord | undefined {
    return this.byDevice.get(deviceId)?.get(moduleId)
  }

  /** GET …/modules/{m}: 404001 without the device, 404010 without the module. */
  require(deviceId: string, moduleId: string): ModuleRecord {
    this.device(deviceId)
    const m = this.get(deviceId, moduleId)
    if (!m) throw new HubError(404010, `Module ${moduleId} on device ${deviceId} not found`)
    return m
  }

  list(deviceId: string): ModuleRecord[] {
    this.device(deviceId)
    return [...(this.byDevice.get(deviceId)?.values() ?? [])]
  }

  /** PUT /devices/{d}/modules/{m}: create without If-Match, update with it. */
  put(deviceId: string, moduleId: string, body: unknown, ifMatch: string | undefined): Promise<ModuleRecord> {
    checkDeviceId(deviceId)
    checkModuleId(moduleId)
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HubError(400004, 'the body must be a module object')
    const b = body as Record<string, unknown>
    if (b.moduleId !== undefined && b.moduleId !== moduleId) throw new HubError(400004, `moduleId in the body (${JSON.stringify(b.moduleId)}) does not match the URL`)
    if (b.deviceId !== undefined && b.deviceId !== deviceId) throw new HubError(400004, `deviceId in the body (${JSON.stringify(b.deviceId)}) does not match the URL`)
    if (b.managedBy !== undefined && b.managedBy !== null && (typeof b.managedBy !== 'string' || b.managedBy.length > 128)) throw new HubError(400004, 'managedBy must be a string of at most 128 characters')
    return this.changes.run(`${deviceId}\n${moduleId}`, async () => {
      this.device(deviceId)
      const existing = this.get(deviceId, moduleId)
      if (ifMatch === undefined) {
        if (existing) throw new HubError(409301, `A module with ID '${moduleId}' already exists on device '${deviceId}'.`)
        if (this.modulesOf(deviceId).size >= MAX_MODULES_PER_DEVICE) throw new HubError(413003, `device ${deviceId} already has ${MAX_MODULES_PER_DEVICE} modules, the most a device may have`)
      } else {
        if (!existing) throw new HubError(404010, `Module ${moduleId} on device ${deviceId} not found`)
        checkEtag(ifMatch, existing.etag)
      }
      const record: ModuleRecord = {
        deviceId, moduleId,
        generationId: existing?.generationId ?? randomGenerationId(),
        etag: this.nextEtag(),
        authentication: authenticationFrom(b, existing?.authentication, 'module'),
        managedBy: b.managedBy === undefined ? existing?.managedBy ?? null : (b.managedBy as string | null),
      }
      await this.write(() => this.db.put([deviceId, moduleId], record))
      // the device may have been deleted while this committed: its modules go with it
      if (!this.devices.get(deviceId)) {
        await this.write(() => this.db.remove([deviceId, moduleId]))
        throw new HubError(404001, `Device ${deviceId} not registered`)
      }
      this.modulesOf(deviceId, true).set(moduleId, record)
      if (!existing) this.onCreated?.(record)
      return record
    })
  }

  delete(deviceId: string, moduleId: string, ifMatch: string | undefined): Promise<void> {
    return this.changes.run(`${deviceId}\n${moduleId}`, async () => {
      const existing = this.require(deviceId, moduleId)
      if (ifMatch !== undefined) checkEtag(ifMatch, existing.etag)
      await this.write(() => this.db.remove([deviceId, moduleId]))
      const modules = this.byDevice.get(deviceId)
      modules?.delete(moduleId)
      if (modules?.size === 0) this.byDevice.delete(deviceId)
      await this.onRemoved?.(deviceId, [moduleId])
    })
  }

  /** A deleted device's modules, in one transaction. */
  private async dropDevice(deviceId: string): Promise<void> {
    const modules = this.byDevice.get(deviceId)
    if (!modules) return
    this.byDevice.delete(deviceId)
    const ids = [...modules.keys()]
    await this.write(() => this.root.transaction(() => { for (const m of ids) this.db.removeSync([deviceId, m]) }))
    await this.onRemoved?.(deviceId, ids)
  }

  get size(): number {
    let n = 0
    for (const m of this.byDevice.values()) n += m.size
    return n
  }

  toJson(m: ModuleRecord): Record<string, unknown> {
    return moduleIdentityJson(m, this.presence)
  }
}

/** The module identity JSON of api-version 2021-04-12, its connection facts from the edge (or a query worker's copy of them). */
export function moduleIdentityJson(m: ModuleRecord, presence?: PresenceView): Record<string, unknown> {
  const key = moduleKey(m.deviceId, m.moduleId)
  const conn = presence?.connectionState(key)
  return {
    moduleId: m.moduleId, deviceId: m.deviceId, generationId: m.generationId, etag: m.etag,
    connectionState: conn?.connected ? 'Connected' : 'Disconnected', connectionStateUpdatedTime: conn?.since ?? NEVER,
    lastActivityTime: presence?.lastActivityTime(key) ?? NEVER, cloudToDeviceMessageCount: 0,
    authentication: m.authentication, managedBy: m.managedBy,
  }
}
