// The identity registry: device records in LMDB (or, in cluster mode, a bucket the nodes share:
// records-store.ts) with an in-memory copy for lookups on the connect path. A change is committed
// before memory shows it (a device that was never stored can never connect); changes to one device
// run one after another, so each checks its etag against the latest committed version; another
// node's changes come in as they commit.
import { randomBytes } from 'node:crypto'
import type { Database } from 'lmdb'
import { lmdbRecords, type RecordsStore } from './records-store.js'
import { HubError } from '../rest/hub-error.js'
import { SerializedChanges } from './serialized-changes.js'
import { generateKey } from '../auth/policies.js'
import type { WriteHealth } from '../store/write-health.js'
import { scopesFrom } from './device-scopes.js'

export type AuthType = 'sas' | 'selfSigned' | 'certificateAuthority' | 'none'

export interface DeviceRecord {
  deviceId: string
  generationId: string
  version: number
  etag: string
  status: 'enabled' | 'disabled'
  statusReason: string | null
  statusUpdatedTime: string
  authentication: {
    type: AuthType
    symmetricKey: { primaryKey: string | null; secondaryKey: string | null }
    x509Thumbprint: { primaryThumbprint: string | null; secondaryThumbprint: string | null }
  }
  capabilities: { iotEdge: boolean }
  /** an edge device's own scope, or a leaf's parent's (device-scopes.ts) */
  deviceScope?: string
  /** the parent edge's scope: set for edge devices ([] without a parent) and for children */
  parentScopes?: string[]
  /** the IoT Plug and Play model the device announced when it last connected */
  modelId?: string
}

/** Live facts the registry does not own: connections and activity come from the edge. */
export interface PresenceView {
  connectionState(deviceId: string): { connected: boolean; since: string }
  lastActivityTime(deviceId: string): string
  cloudToDeviceMessageCount(deviceId: string): number
}

export const NEVER = '0001-01-01T00:00:00'
// Azure's current rule: ASCII alphanumerics and - . % _ * ? ! ( ) , : = @ $ ' ; no + or # (they break MQTT topics)
const DEVICE_ID = /^[A-Za-z0-9\-.%_*?!(),:=@$']{1,128}$/

export function checkDeviceId(id: string): void {
  if (!DEVICE_ID.test(id)) throw new HubError(400004, `DeviceId ${JSON.stringify(id)} is invalid: 1-128 ASCII letters, digits or - . % _ * ? ! ( ) , : = @ $ '`)
}

function checkKey(name: string, key: unknown): string | null {
  if (key === null || key === undefined || key === '') return null
  if (typeof key !== 'string' || !/^[A-Za-z0-9+/]+={0,2}$/.test(key)) throw new HubError(400004, `${name} is not a base64 key`)
  const len = Buffer.from(key, 'base64').length
  if (len < 16 || len > 64) throw new HubError(400004, `${name} must decode to 16..64 bytes`)
  return key
}

function thumbprint(v: unknown): string | null {
  if (v === null || v === undefined || v === '') return null
  if (typeof v !== 'string' || !/^([0-9A-Fa-f]{40}|[0-9A-Fa-f]{64})$/.test(v)) throw new HubError(400004, 'thumbprint must be a SHA1 or SHA256 hex digest')
  return v.toUpperCase()
}

export function authenticationFrom(body: Record<string, unknown>, previous?: DeviceRecord['authentication'], what = 'device'): DeviceRecord['authentication'] {
  const auth = (body.authentication ?? {}) as Record<string, any>
  const type: AuthType = auth.type ?? 'sas'
  if (!['sas', 'selfSigned', 'certificateAuthority', 'none'].includes(type)) throw new HubError(400004, `authentication.type ${JSON.stringify(type)} is not one of sas, selfSigned, certificateAuthority, none`)
  const x509 = { primaryThumbprint: thumbprint(auth.x509Thumbprint?.primaryThumbprint), secondaryThumbprint: thumbprint(auth.x509Thumbprint?.secondaryThumbprint) }
  let primaryKey = checkKey('primaryKey', auth.symmetricKey?.primaryKey)
  let secondaryKey = checkKey('secondaryKey', auth.symmetricKey?.secondaryKey)
  if (type === 'sas') {
    if (x509.primaryThumbprint || x509.secondaryThumbprint) throw new HubError(400004, `a sas ${what} cannot also have thumbprints`)
    // empty keys mean "generate", as the service SDK sends them on create
    primaryKey ??= previous?.type === 'sas' && auth.symmetricKey === undefined ? previous.symmetricKey.primaryKey : generateKey()
    secondaryKey ??= previous?.type === 'sas' && auth.symmetricKey === undefined ? previous.symmetricKey.secondaryKey : generateKey()
  } else {
    if (primaryKey || secondaryKey) throw new HubError(400004, `a ${type} ${what} cannot have symmetric keys`)
    if (type === 'selfSigned' && !x509.primaryThumbprint) throw new HubError(400004, `a selfSigned ${what} needs authentication.x509Thumbprint.primaryThumbprint`)
  }
  return { type, symmetricKey: { primaryKey, secondaryKey }, x509Thumbprint: x509 }
}

export type RegistryEvent = { kind: 'updated' | 'deleted'; device: DeviceRecord }

export class DeviceRegistry {
  private readonly devices = new Map<string, DeviceRecord>()
  private etagCounter = Date.now() * 1000
  private listeners: ((e: RegistryEvent) => void)[] = []
  private readonly changes = new SerializedChanges()
  /** edge devices by their scope, for children naming their parent */
  private readonly edgeByScope = new Map<string, DeviceRecord>()

  private readonly store: RecordsStore<DeviceRecord>

  constructor(db: Database | RecordsStore<DeviceRecord>, private readonly presence: PresenceView, private readonly health?: WriteHealth) {
    this.store = 'getRange' in db ? lmdbRecords<DeviceRecord>(db) : db
    for (const d of this.store.load()) {
      this.devices.set(d.deviceId, d)
      if (d.capabilities.iotEdge && d.deviceScope) this.edgeByScope.set(d.deviceScope, d)
    }
    this.store.onRemoteChange((deviceId, record) => this.changedElsewhere(deviceId, record))
  }

  /** Another node committed a change of this device: memory shows it, and the listeners hear of it. */
  private changedElsewhere(deviceId: string, record: DeviceRecord | undefined): void {
    const existing = this.devices.get(deviceId)
    if (record) this.devices.set(deviceId, record)
    else if (existing) this.devices.delete(deviceId)
    else return
    this.indexScope(existing, record)
    for (const l of this.listeners) l(record ? { kind: 'updated', device: record } : { kind: 'deleted', device: existing! })
  }

  private indexScope(before: DeviceRecord | undefined, after: DeviceRecord | undefined): void {
    if (before?.deviceScope && this.edgeByScope.get(before.deviceScope) === before) this.edgeByScope.delete(before.deviceScope)
    if (after?.capabilities.iotEdge && after.deviceScope) this.edgeByScope.set(after.deviceScope, after)
  }

  onChange(listener: (e: RegistryEvent) => void): void { this.listeners.push(listener) }

  get(deviceId: string): DeviceRecord | undefined { return this.devices.get(deviceId) }

  get size(): number { return this.devices.size }

  /** Every device, live: an iteration that awaits between steps skips devices deleted meanwhile and reaches ones added (export jobs page through it). */
  values(): IterableIterator<DeviceRecord> { return this.devices.values() }

  private nextEtag(): string { return Buffer.from(String(++this.etagCounter)).toString('base64') }

  private async write(op: () => Promise<unknown>): Promise<void> {
    if (!this.health) { await op(); return }
    // a refusal (another node changed the record: 409, 412) is the caller's answer, not a failing store
    let refusal: HubError | undefined
    await this.health.run(async () => {
      try { await op() } catch (e) { if (e instanceof HubError && e.status < 500) refusal = e; else throw e }
    })
    if (refusal) throw refusal
  }

  /** PUT /devices/{id}: create without If-Match, update with it. */
  async put(deviceId: string, body: unknown, ifMatch: string | undefined): Promise<DeviceRecord> {
    checkDeviceId(deviceId)
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HubError(400004, 'the body must be a device object')
    const b = body as Record<string, unknown>
    if (b.deviceId !== undefined && b.deviceId !== deviceId) throw new HubError(400004, `deviceId in the body (${JSON.stringify(b.deviceId)}) does not match the URL`)
    const status = b.status ?? 'enabled'
    if (status !== 'enabled' && status !== 'disabled') throw new HubError(400004, 'status must be "enabled" or "disabled"')
    if (b.statusReason !== undefined && b.statusReason !== null && (typeof b.statusReason !== 'string' || b.statusReason.length > 128)) throw new HubError(400004, 'statusReason must be a string of at most 128 characters')
    return this.changes.run(deviceId, () => this.putNow(deviceId, b, status, ifMatch))
  }

  private async putNow(deviceId: string, b: Record<string, unknown>, status: 'enabled' | 'disabled', ifMatch: string | undefined): Promise<DeviceRecord> {
    const existing = this.devices.get(deviceId)
    if (ifMatch === undefined) {
      if (existing) throw new HubError(409001, `A device with ID '${deviceId}' is already registered.`)
    } else {
      if (!existing) throw new HubError(404001, `Device ${deviceId} not registered`)
      checkEtag(ifMatch, existing.etag)
    }
    const now = new Date().toISOString()
    const generationId = existing?.generationId ?? randomGenerationId()
    const iotEdge = Boolean((b.capabilities as { iotEdge?: unknown } | undefined)?.iotEdge)
    const scopes = scopesFrom(b, deviceId, generationId, iotEdge, existing, (scope) => this.edgeByScope.get(scope))
    const record: DeviceRecord = {
      deviceId,
      generationId,
      version: (existing?.version ?? 0) + 1,
      etag: this.nextEtag(),
      status,
      statusReason: (b.statusReason as string | null | undefined) ?? null,
      statusUpdatedTime: existing && existing.status === status ? existing.statusUpdatedTime : existing ? now : NEVER,
      authentication: authenticationFrom(b, existing?.authentication),
      capabilities: { iotEdge },
      ...scopes,
      // announced by the device, not set by the service: kept across updates
      ...(existing?.modelId ? { modelId: existing.modelId } : {}),
    }
    let shown: DeviceRecord | undefined
    await this.write(async () => { shown = await this.store.put(deviceId, record, existing) })
    if (shown) {
      // another node changed it after this write: memory shows theirs (its listeners heard of it)
      return record
    }
    this.devices.set(deviceId, record)
    this.indexScope(existing, record)
    for (const l of this.listeners) l({ kind: 'updated', device: record })
    return record
  }

  /** The model id a device announced at connect (IoT Plug and Play); stored when it changes. The etag stays: the service did not change the identity. */
  setModelId(deviceId: string, modelId: string): Promise<void> {
    return this.changes.run(deviceId, async () => {
      const existing = this.devices.get(deviceId)
      if (!existing || (existing.modelId ?? '') === modelId) return
      const record: DeviceRecord = { ...existing, modelId }
      let shown: DeviceRecord | undefined
      await this.write(async () => { shown = await this.store.put(deviceId, record, existing) })
      if (!shown) {
        this.devices.set(deviceId, record)
        this.indexScope(existing, record)
      }
    })
  }

  delete(deviceId: string, ifMatch: string | undefined): Promise<void> {
    return this.changes.run(deviceId, async () => {
      const existing = this.devices.get(deviceId)
      if (!existing) throw new HubError(404001, `Device ${deviceId} not registered`)
      if (ifMatch !== undefined) checkEtag(ifMatch, existing.etag)
      await this.write(() => this.store.remove(deviceId))
      this.devices.delete(deviceId)
      this.indexScope(existing, undefined)
      for (const l of this.listeners) l({ kind: 'deleted', device: existing })
    })
  }

  list(top = 1000): DeviceRecord[] {
    const out: DeviceRecord[] = []
    for (const d of this.devices.values()) {
      if (out.length >= top) break
      out.push(d)
    }
    return out
  }

  statistics() {
    let enabled = 0
    for (const d of this.devices.values()) if (d.status === 'enabled') enabled++
    return { totalDeviceCount: this.devices.size, enabledDeviceCount: enabled, disabledDeviceCount: this.devices.size - enabled }
  }

  /** The identity JSON of api-version 2021-04-12. */
  toJson(d: DeviceRecord): Record<string, unknown> {
    return identityJson(d, this.presence)
  }
}

/** A device's identity JSON with its live facts (also built by the query workers from a snapshot). */
export function identityJson(d: DeviceRecord, presence: PresenceView): Record<string, unknown> {
  const conn = presence.connectionState(d.deviceId)
  return {
    deviceId: d.deviceId,
    generationId: d.generationId,
    etag: d.etag,
    connectionState: conn.connected ? 'Connected' : 'Disconnected',
    status: d.status,
    statusReason: d.statusReason,
    connectionStateUpdatedTime: conn.since,
    statusUpdatedTime: d.statusUpdatedTime,
    lastActivityTime: presence.lastActivityTime(d.deviceId),
    cloudToDeviceMessageCount: presence.cloudToDeviceMessageCount(d.deviceId),
    authentication: d.authentication,
    capabilities: d.capabilities,
    ...scopeJson(d),
    modelId: d.modelId ?? '',
  }
}

/** deviceScope and parentScopes as the registry returns them: a non-edge device without a parent has neither. */
export function scopeJson(d: DeviceRecord): { deviceScope?: string; parentScopes?: string[] } {
  return { ...(d.deviceScope ? { deviceScope: d.deviceScope } : {}), ...(d.parentScopes ? { parentScopes: d.parentScopes } : d.capabilities.iotEdge ? { parentScopes: [] } : {}) }
}

export function randomGenerationId(): string {
  // 18 decimal digits, like Azure's
  return (BigInt('0x' + randomBytes(8).toString('hex')) % 10n ** 18n).toString().padStart(18, '6')
}

/** If-Match is a quoted etag or "*"; unquoted values are accepted too. */
export function checkEtag(ifMatch: string, etag: string): void {
  const wanted = ifMatch.trim().replace(/^W\//, '').replace(/^"(.*)"$/, '$1')
  if (wanted !== '*' && wanted !== etag) throw new HubError(412001, `Precondition failed: the etag ${JSON.stringify(wanted)} does not match the current one`)
}
