// The blob side of a storage endpoint partition: a staged batch becomes one block appended to its
// Azure-named block blob (Put Block, then Put Block List of the blob's committed blocks plus this
// one). The block id is the endpoint's incarnation and the batch's first outbox sequence number, so a
// publish redone after a crash (or after the store lost its last seconds) finds its block already
// committed and appends nothing, and an endpoint created again under the same name never takes an
// old block for its own: each batch lands once. The account arrives from the main thread once the
// hub's blob store is open (again after it restarts: `generation` counts that); until then publishes wait.
import { randomBytes } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { rm, stat } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { createDeflateRaw } from 'node:zlib'
import { blockPrefix, containerHeader, syncMarker, type AvroCodec } from './avro-records.js'
import type { ContainerClient } from '@azure/storage-blob'
import { blobServiceClient, type BlobAccess } from '../src/storage/blob-client.js'

/** A new endpoint's incarnation: 6 hex digits, so block ids keep one length (22 characters). */
export function newIncarnation(): string {
  return randomBytes(3).toString('hex')
}

/** Block ids of one blob must all have the same length: incarnation and sequence number, zero-padded. */
export function batchBlockId(incarnation: string, firstSequence: number): string {
  return Buffer.from(`${incarnation.padEnd(6, '0').slice(0, 6)}${String(firstSequence).padStart(16, '0')}`).toString('base64')
}

/** blobs whose committed block list is remembered (fetched once, then kept by each commit) */
const LISTS_KEPT = 256

export class BlobBatchSinks {
  private readonly containers = new Map<string, Promise<ContainerClient>>()
  private readonly lists = new Map<string, string[]>()
  private client?: ReturnType<typeof blobServiceClient>
  private opened!: Promise<void>
  private markOpened!: () => void
  /** how many times the store was (re)connected: a deliverer that sees it change rewinds to its safe point */
  generation = 0

  constructor() {
    this.opened = new Promise((resolve) => { this.markOpened = resolve })
  }

  /** The store's account (again, after it restarted: a new key or port replaces the old). */
  connect(access: BlobAccess): void {
    this.client?.agent.destroy()
    // a batch of up to 500 MB goes in one Put Block: its try may take minutes; the deliverer retries after
    this.client = blobServiceClient(access, 300_000)
    this.containers.clear()
    // a restarted store may have lost what it committed last: lists are fetched again
    this.lists.clear()
    this.generation++
    this.markOpened()
  }

  private async container(name: string, signal?: { isStopped: boolean }): Promise<ContainerClient> {
    while (!this.client) {
      if (signal?.isStopped) throw new Error('stopped before the blob store was open')
      // one promise for every waiter: nothing piles up while the store stays closed
      await Promise.race([this.opened, new Promise((resolve) => setTimeout(resolve, 1000).unref())])
    }
    let c = this.containers.get(name)
    if (!c) {
      const client = this.client.service.getContainerClient(name)
      c = client.createIfNotExists().then(() => client)
      this.containers.set(name, c)
      c.catch(() => this.containers.delete(name))
    }
    return c
  }

  /**
   * Appends `file` as block `blockId` of `container/blobName`, unless that block is committed already.
   * `avro`: the file holds that many Avro-encoded records, framed here as one data block (after the
   * container header when the blob is new), compressed for `deflate`.
   */
  async append(container: string, blobName: string, blockId: string, file: string, signal?: { isStopped: boolean }, avro?: { codec: AvroCodec; records: number }): Promise<void> {
    const blob = (await this.container(container, signal)).getBlockBlobClient(blobName)
    const key = `${container}/${blobName}`
    let committed = this.lists.get(key)
    if (!committed) {
      try {
        const list = await blob.getBlockList('committed')
        committed = (list.committedBlocks ?? []).map((b) => b.name)
      } catch (e) {
        const err = e as { statusCode?: number; code?: string; details?: { errorCode?: string } }
        if (err.statusCode !== 404) throw e
        // the container itself is gone (a back end deleted it): made again on the next try
        if ((err.details?.errorCode ?? err.code) === 'ContainerNotFound') {
          this.containers.delete(container)
          throw new Error(`container ${container} does not exist; it is created again`)
        }
        committed = []
      }
    }
    if (committed.includes(blockId)) return
    if (avro) await this.stageAvro(blob, blockId, file, blobName, committed.length === 0, avro)
    else await blob.stageBlock(blockId, () => createReadStream(file), (await stat(file)).size)
    const next = [...committed, blockId]
    try {
      await blob.commitBlockList(next, { blobHTTPHeaders: { blobContentType: avro ? 'avro/binary' : 'application/json' } })
    } catch (e) {
      this.lists.delete(key) // the commit may have happened after all: ask the store next time
      throw e
    }
    this.lists.delete(key)
    this.lists.set(key, next)
    if (this.lists.size > LISTS_KEPT) this.lists.delete(this.lists.keys().next().value!)
  }

  private async stageAvro(blob: ReturnType<ContainerClient['getBlockBlobClient']>, blockId: string, file: string, blobName: string, isNew: boolean,
    avro: { codec: AvroCodec; records: number }): Promise<void> {
    // deflate: compressed beside the stage (a stream, never the whole batch in memory)
    const body = avro.codec === 'deflate' ? `${file}.deflate` : file
    if (body !== file) await pipeline(createReadStream(file), createDeflateRaw(), createWriteStream(body))
    try {
      const { size } = await stat(body)
      const sync = syncMarker(blobName)
      const head = Buffer.concat([isNew ? containerHeader(avro.codec, sync) : Buffer.alloc(0), blockPrefix(avro.records, size)])
      const stream = () => Readable.from((async function* () {
        yield head
        yield* createReadStream(body)
        yield sync
      })())
      await blob.stageBlock(blockId, stream, head.length + size + sync.length)
    } finally {
      if (body !== file) await rm(body, { force: true })
    }
  }

  close(): void {
    this.client?.agent.destroy()
  }
}
