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
    if (/[\x00-\x1f\x7f\\]/.test(requested) || /(^|\/)\.{0,2}(\/|$)/.test(requested)) throw new HubError(400004, `blobName ${JSON.stringify(requested.slice(0, 80))} is not a valid blob name`)
    const blobName = `${deviceId}/${requested}`
    if (blobName.length > MAX_BLOB_NAME) throw new HubError(400004, `the blob name is ${blobName.length} characters; at most ${MAX_BLOB_NAME} fit`)
    if (this.activeCount(deviceId, now) >= MAX_ACTIVE_UPLOADS) throw new HubError(403006, `Number of active file upload requests cannot exceed ${MAX_ACTIVE_UPLOADS}`)
    const target = await this.target()
    const { container } = this.settings
    if (!this.containersReady.has(container)) {
      await target.ensureContainer(container)
      this.containersReady.add(container)
    }
    const correlationId = randomBytes(24).toString('base64url')
    const expires = now + this.settings.sasTtlMs
    const upload: Upload = { deviceId, blobName, container, hostName: target.hostName, expires }
    // counted at once, so concurrent starts cannot pass the limit while this one commits
    this.remember(correlationId, upload)
    try {
      await this.write(() => this.db.put(correlationId, upload))
    } catch (e) {
      this.forget(correlationId)
      throw e
    }
    return { correlationId, hostName: target.hostName, containerName: container, blobName, sasToken: target.blobSas(container, blobName, new Date(expires)) }
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
    if (upload.expires <= now) {
      await this.end(correlationId)
      throw new HubError(400016, `the file upload ${correlationId} expired at ${new Date(upload.expires).toISOString()}`)
    }
    if (!report.isSuccess || !this.settings.notifications) return this.end(correlationId)
    const target = await this.target()
    const props = await target.blobProperties(upload.container, upload.blobName)
    if (!props) throw new HubError(400020, `the device reported ${upload.blobName} uploaded, but the blob store has no such blob`)
    const notification: FileNotification = {
      deviceId, blobUri: target.blobUri(upload.container, upload.blobName), blobName: upload.blobName,
      lastUpdatedTime: props.lastModified.toISOString(), blobSizeInBytes: props.size, enqueuedTimeUtc: new Date(now).toISOString(),
    }
    await this.notifications.enqueue(notification, now, () => this.db.removeSync(correlationId))
    this.forget(correlationId)
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
