// File uploads (file-upload.md): a device asks for a blob SAS (`start`), writes the file straight to
// the blob store, then reports how it went (`complete`). The hub never carries file bytes. Each
// started upload is kept in LMDB under its correlation id until the device reports it or its SAS
// expires, so a restart neither forgets an upload nor frees its slot early; at most 10 run per
// device. A successful report queues a file notification for the service, in the same transaction
// that ends the upload: the 204 means the notification is stored.
import { randomBytes } from 'node:crypto'
import type { Database, RootDatabase } from 'lmdb'
import { HubError } from '../rest/hub-error.js'
import type { ServiceBoundQueue } from '../c2d/service-bound-queue.js'
import type { WriteHealth } from '../store/write-health.js'

/** Azure: at most 10 uploads in progress per device (403006). */
export const MAX_ACTIVE_UPLOADS = 10
/** Azure's blob names: at most 1,024 characters */
const MAX_BLOB_NAME = 1024
/** blob store calls waiting at once, hub-wide; past it a start or report is refused (503) rather than queued */
export const MAX_STORE_CALLS = 64
/** file notifications waiting for the service, hub-wide; past it a success report is refused (503) and the upload stays open */
export const MAX_PENDING_NOTIFICATIONS = 10_000
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/

/** A file notification as the service receives it (content type application/vnd.microsoft.iothub.filenotification.json). */
export interface FileNotification {
  deviceId: string
  blobUri: string
  blobName: string
  lastUpdatedTime: string
  blobSizeInBytes: number
  enqueuedTimeUtc: string
}

/** The blob store as file upload sees it (src/storage/blob-store.ts). */
export interface UploadTarget {
  /** what the device dials: `https://${hostName}/${container}/${blobName}${sasToken}` (a port and a path-style account fit in it) */
  hostName: string
  blobUri(container: string, blobName: string): string
  /** a SAS for that one blob, read and write, until `expiresOn`; starts with `?` */
  blobSas(container: string, blobName: string, expiresOn: Date): string
  ensureContainer(container: string): Promise<void>
  blobProperties(container: string, blobName: string): Promise<{ size: number; lastModified: Date } | undefined>
}

export interface FileUploadSettings {
  container: string
  sasTtlMs: number
  notifications: boolean
  /** MAX_PENDING_NOTIFICATIONS unless set */
  maxPendingNotifications?: number
}

interface Upload { deviceId: string; blobName: string; container: string; hostName: string; expires: number }

export interface StartedUpload { correlationId: string; hostName: string; containerName: string; blobName: string; sasToken: string }

export interface Completion { isSuccess: unknown; statusCode?: unknown; statusDescription?: unknown }

export class FileUploads {
  /** device → its uploads in progress (correlation ids) */
  private readonly active = new Map<string, Set<string>>()
  private readonly uploads = new Map<string, Upload>()
  private readonly timer: NodeJS.Timeout
  private readonly containersReady = new Set<string>()
  /** correlation ids whose report is being handled: a second report of one is refused, not queued twice */
  private readonly reporting = new Set<string>()
  private storeCalls = 0

  constructor(
    private readonly root: RootDatabase, private readonly db: Database, private readonly notifications: ServiceBoundQueue<FileNotification>,
    private readonly target: () => Promise<UploadTarget>, private readonly settings: FileUploadSettings, private readonly health?: WriteHealth,
  ) {
    for (const { key, value } of db.getRange()) this.remember(key as string, value as Upload)
    this.timer = setInterval(() => { void this.expire() }, 60_000)
    this.timer.unref()
  }

  private remember(id: string, u: Upload): void {
    this.uploads.set(id, u)
    let set = this.active.get(u.deviceId)
    if (!set) this.active.set(u.deviceId, (set = new Set()))
    set.add(id)
  }

  private forget(id: string): void {
    const u = this.uploads.get(id)
    if (!u) return
    this.uploads.delete(id)
    const set = this.active.get(u.deviceId)
    set?.delete(id)
    if (set?.size === 0) this.active.delete(u.deviceId)
  }

  private async write(op: () => Promise<unknown>): Promise<void> {
    await (this.health ? this.health.run(op) : op())
  }

  /** A call to the blob store, bounded in number; its failures answer 503 (the store, not the request, is at fault). */
  private async store<T>(call: (target: UploadTarget) => Promise<T>): Promise<T> {
    if (this.storeCalls >= MAX_STORE_CALLS) throw new HubError(503001, `more than ${MAX_STORE_CALLS} requests are waiting for the blob store; retry later`)
    this.storeCalls++
    try {
      return await call(await this.target())
    } catch (e) {
      if (e instanceof HubError) throw e
      throw new HubError(503001, 'the blob store did not answer; retry later')
    } finally {
      this.storeCalls--
    }
  }

  /** Uploads in progress of a device (those whose SAS has not expired). */
  activeCount(deviceId: string, now = Date.now()): number {
    let n = 0
    for (const id of this.active.get(deviceId) ?? []) if (this.uploads.get(id)!.expires > now) n++
    return n
  }

  /** POST /devices/{id}/files: the SAS for `{deviceId}/{blobName}`, once the upload is recorded. */
  async start(deviceId: string, requested: unknown, now = Date.now()): Promise<StartedUpload> {
    if (typeof requested !== 'string' || requested.length === 0) throw new HubError(400004, 'the body must be {"blobName": "<name>"}')
    // the name goes into a URL and a notification: no control characters, no empty path segments
    if (/[\x00-\x1f\x7f\\]/.test(requested) || LONE_SURROGATE.test(requested) || /(^|\/)\.{0,2}(\/|$)/.test(requested)) throw new HubError(400004, `blobName ${JSON.stringify(requested.slice(0, 80))} is not a valid blob name`)
    const blobName = `${deviceId}/${requested}`
    if (blobName.length > MAX_BLOB_NAME) throw new HubError(400004, `the blob name is ${blobName.length} characters; at most ${MAX_BLOB_NAME} fit`)
    if (this.activeCount(deviceId, now) >= MAX_ACTIVE_UPLOADS) throw new HubError(403006, `Number of active file upload requests cannot exceed ${MAX_ACTIVE_UPLOADS}`)
    const { container } = this.settings
    const correlationId = randomBytes(24).toString('base64url')
    const upload: Upload = { deviceId, blobName, container, hostName: '', expires: now + this.settings.sasTtlMs }
    // counted before any wait (the store starting, the commit), so concurrent starts cannot pass the limit
    this.remember(correlationId, upload)
    try {
      const target = await this.store(async (t) => {
        if (!this.containersReady.has(container)) {
          await t.ensureContainer(container)
          this.containersReady.add(container)
        }
        return t
      })
      upload.hostName = target.hostName
      await this.write(() => this.db.put(correlationId, upload))
      return { correlationId, hostName: target.hostName, containerName: container, blobName, sasToken: target.blobSas(container, blobName, new Date(upload.expires)) }
    } catch (e) {
      this.forget(correlationId)
      throw e
    }
  }

  /**
   * POST /devices/{id}/files/notifications: the device says how its upload went. The slot is freed
   * either way; a success (with notifications on) is checked against the blob store and queued for the
   * service in the same commit that ends the upload.
   */
  async complete(deviceId: string, correlationId: unknown, report: Completion, now = Date.now()): Promise<void> {
    if (typeof correlationId !== 'string' || correlationId === '') throw new HubError(400015, 'the notification names no correlationId')
    const upload = this.uploads.get(correlationId)
    // another device's correlation id is as unknown to this one as a made-up id
    if (!upload || upload.deviceId !== deviceId) throw new HubError(400015, `correlation id ${JSON.stringify(correlationId.slice(0, 64))} names no file upload of device ${deviceId}`)
    if (typeof report.isSuccess !== 'boolean') throw new HubError(400019, 'isSuccess must be true or false')
    if (report.statusCode !== undefined && !Number.isInteger(report.statusCode)) throw new HubError(400019, 'statusCode must be an integer')
    if (this.reporting.has(correlationId)) throw new HubError(400015, `the file upload ${correlationId} is being reported already`)
    this.reporting.add(correlationId)
    try {
      if (upload.expires <= now) {
        await this.end(correlationId)
        throw new HubError(400016, `the file upload ${correlationId} expired at ${new Date(upload.expires).toISOString()}`)
      }
      if (!report.isSuccess || !this.settings.notifications) return await this.end(correlationId)
      const maxPending = this.settings.maxPendingNotifications ?? MAX_PENDING_NOTIFICATIONS
      if (this.notifications.size >= maxPending) throw new HubError(503001, `${maxPending} file notifications are waiting for the service; report again later`)
      const { props, target } = await this.store(async (t) => ({ props: await t.blobProperties(upload.container, upload.blobName), target: t }))
      if (!props) throw new HubError(400020, `the device reported ${upload.blobName} uploaded, but the blob store has no such blob`)
      const notification: FileNotification = {
        deviceId, blobUri: target.blobUri(upload.container, upload.blobName), blobName: upload.blobName,
        lastUpdatedTime: props.lastModified.toISOString(), blobSizeInBytes: props.size, enqueuedTimeUtc: new Date(now).toISOString(),
      }
      await this.notifications.enqueue(notification, now, () => this.db.removeSync(correlationId))
      this.forget(correlationId)
    } finally {
      this.reporting.delete(correlationId)
    }
  }

  private async end(correlationId: string): Promise<void> {
    await this.write(() => this.db.remove(correlationId))
    this.forget(correlationId)
  }

  /** Uploads whose SAS expired free their slots and leave the store. */
  private async expire(now = Date.now()): Promise<void> {
    const gone = [...this.uploads].filter(([, u]) => u.expires <= now).map(([id]) => id)
    if (gone.length === 0) return
    try {
      await this.write(() => this.root.transaction(() => { for (const id of gone) this.db.removeSync(id) }))
      for (const id of gone) this.forget(id)
    } catch {
      // kept for the next sweep; their slots are free already (activeCount skips expired ones)
    }
  }

  close(): void {
    clearInterval(this.timer)
  }
}
