// The hub's blob store, as file upload and storage routing endpoints use it: the embedded Azurite
// (started at boot or on first use, once) or a storage account the user named by connection string.
// The hub's own calls (containers, blob properties, routed writes) go through @azure/storage-blob
// with the hub's CA trusted, since the embedded store's certificate comes from that CA.
import type { Agent } from 'node:https'
import { BlobSASPermissions, generateBlobSASQueryParameters, SASProtocol, type BlobServiceClient, type ContainerClient } from '@azure/storage-blob'
import type { Logger } from '../log.js'
import { HubError } from '../rest/hub-error.js'
import type { UploadTarget } from '../files/file-uploads.js'
import { AzuriteProcess } from './azurite-process.js'
import { parseStorageConnectionString, type StorageAccount } from './storage-connection-string.js'
import { blobServiceClient, type BlobAccess } from './blob-client.js'

export interface BlobStoreOptions {
  /** `embedded`, `off` or a connection string (HubConfig.blobStore) */
  setting: string
  dataDir: string
  port: number
  certFile: string
  keyFile: string
  /** PEM of the CA the embedded store's certificate comes from */
  caPem: string
  log: Logger
  /** the store opened (again): the shards' storage endpoints get its account */
  onOpened?: (access: BlobAccess) => Promise<unknown>
}

interface Opened { account: StorageAccount; service: BlobServiceClient; target: UploadTarget; agent: Agent }

export class BlobStore {
  private readonly azurite?: AzuriteProcess
  private opening?: Promise<Opened>
  /** someone relies on the store staying open (storage endpoints, a start at boot): it is reopened when it fails */
  private kept = false
  private closed = false
  private retry?: NodeJS.Timeout
  private failures = 0

  constructor(private readonly o: BlobStoreOptions) {
    if (o.setting === 'embedded') {
      this.azurite = new AzuriteProcess({
        dataDir: o.dataDir, port: o.port, certFile: o.certFile, keyFile: o.keyFile, log: o.log,
        onUnexpectedExit: (code, signal) => {
          o.log.error('the embedded blob store stopped; it is started again', { code, signal })
          this.opening = undefined
          if (this.kept) this.reopenLater()
        },
      })
    }
  }

  /** The embedded store's process id while it runs. */
  get pid(): number | undefined { return this.azurite?.pid }

  /** Opens the store and keeps it open: a failed open or a store that dies is retried, 1 s to 30 s apart. */
  keepOpen(): void {
    if (!this.configured || this.closed) return
    this.kept = true
    this.open().then(() => { this.failures = 0 }, () => this.reopenLater())
  }

  private reopenLater(): void {
    if (this.closed || this.retry) return
    const delay = Math.min(30_000, 1000 * 2 ** Math.min(this.failures++, 5))
    this.retry = setTimeout(() => { this.retry = undefined; this.keepOpen() }, delay)
    this.retry.unref()
  }

  get configured(): boolean { return this.o.setting !== 'off' }
  get embedded(): boolean { return this.azurite !== undefined }

  /** The store, started and reachable; 400014 when the hub has none. */
  open(): Promise<Opened> {
    if (!this.configured) return Promise.reject(new HubError(400014, 'this hub has no blob store (blobStore is off): file upload needs one'))
    this.opening ??= this.connect().catch((e: unknown) => {
      this.opening = undefined
      this.o.log.error('the blob store cannot be opened', { error: e as Error })
      throw new HubError(503001, 'the blob store is not available; retry later')
    })
    return this.opening
  }

  /** What file upload hands out and checks. */
  async target(): Promise<UploadTarget> {
    return (await this.open()).target
  }

  /** The embedded store once it runs: its `host:port` and the CA of its certificate (import and export jobs trust it there, on loopback); undefined for a storage account. */
  get embeddedEndpoint(): { host: string; caPem: string } | undefined {
    const endpoint = this.azurite?.endpoint
    return endpoint ? { host: new URL(endpoint.blobEndpoint).host, caPem: this.o.caPem } : undefined
  }

  /** The connection string a back end reads the store with, or undefined before the embedded store has started. */
  get connectionString(): string | undefined {
    return this.azurite ? this.azurite.endpoint?.connectionString : this.configured ? this.o.setting : undefined
  }

  private async connect(): Promise<Opened> {
    const account = this.azurite
      ? await this.azurite.start().then((e) => ({ accountName: e.accountName, accountKey: e.accountKey, blobEndpoint: e.blobEndpoint }))
      : parseStorageConnectionString(this.o.setting)
    const access: BlobAccess = { account, caPem: this.azurite ? this.o.caPem : null }
    const { service, credential, agent } = blobServiceClient(access)
    const url = new URL(account.blobEndpoint)
    // `https://${hostName}/${container}/${blob}`: a port and Azurite's path-style account fit in it
    const hostName = `${url.host}${url.pathname.replace(/\/+$/, '')}`
    // one client per container (building clients was half of the hub's CPU per uploaded file)
    const containers = new Map<string, ContainerClient>()
    const containerOf = (name: string) => {
      let c = containers.get(name)
      if (!c) containers.set(name, (c = service.getContainerClient(name)))
      return c
    }
    const target: UploadTarget = {
      hostName,
      blobUri: (container, blobName) => containerOf(container).getBlockBlobClient(blobName).url,
      blobSas: (container, blobName, expiresOn) => `?${generateBlobSASQueryParameters({
        containerName: container, blobName, permissions: BlobSASPermissions.parse('rw'), expiresOn, protocol: SASProtocol.Https,
      }, credential).toString()}`,
      ensureContainer: async (container) => { await containerOf(container).createIfNotExists() },
      blobProperties: async (container, blobName) => {
        try {
          const p = await containerOf(container).getBlockBlobClient(blobName).getProperties()
          return { size: p.contentLength ?? 0, lastModified: p.lastModified ?? new Date() }
        } catch (e) {
          if ((e as { statusCode?: number }).statusCode === 404) return undefined
          throw e
        }
      },
    }
    await this.o.onOpened?.(access)
    return { account, service, target, agent }
  }

  async close(): Promise<void> {
    this.closed = true
    clearTimeout(this.retry)
    const opened = await this.opening?.catch(() => undefined)
    opened?.agent.destroy()
    await this.azurite?.stop()
  }
}
