// The blob side of a storage endpoint partition: a staged batch becomes one block appended to its
// Azure-named block blob (Put Block, then Put Block List of the blob's committed blocks plus this
// one). The block id is the batch's first outbox sequence number, so a publish redone after a crash
// finds its block already committed and appends nothing: each batch lands once. The account arrives
// from the main thread once the hub's blob store is open; until then publishes wait.
import { createReadStream, createWriteStream } from 'node:fs'
import { rm, stat } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { createDeflateRaw } from 'node:zlib'
import { blockPrefix, containerHeader, syncMarker, type AvroCodec } from './avro-records.js'
import type { ContainerClient } from '@azure/storage-blob'
import { blobServiceClient, type BlobAccess } from '../src/storage/blob-client.js'

/** Block ids of one blob must all have the same length: the sequence number, zero-padded. */
export function batchBlockId(firstSequence: number): string {
  return Buffer.from(`batch-${String(firstSequence).padStart(16, '0')}`).toString('base64')
}

export class BlobBatchSinks {
  private readonly waiting: (() => void)[] = []
  private readonly containers = new Map<string, Promise<ContainerClient>>()
  private client?: ReturnType<typeof blobServiceClient>

  /** The store's account (again, after it restarted: a new key or port replaces the old). */
  connect(access: BlobAccess): void {
    this.client?.agent.destroy()
    // a batch of up to 500 MB goes in one Put Block: its try may take minutes; the deliverer retries after
    this.client = blobServiceClient(access, 300_000)
    this.containers.clear()
    for (const w of this.waiting.splice(0)) w()
  }

  private async container(name: string, signal?: { isStopped: boolean }): Promise<ContainerClient> {
    while (!this.client) {
      if (signal?.isStopped) throw new Error('stopped before the blob store was open')
      await new Promise<void>((resolve) => { this.waiting.push(resolve); setTimeout(resolve, 1000).unref() })
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
    let committed: string[] = []
    try {
      const list = await blob.getBlockList('committed')
      committed = (list.committedBlocks ?? []).map((b) => b.name)
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode !== 404) throw e
    }
    if (committed.includes(blockId)) return
    if (avro) await this.stageAvro(blob, blockId, file, blobName, committed.length === 0, avro)
    else await blob.stageBlock(blockId, () => createReadStream(file), (await stat(file)).size)
    await blob.commitBlockList([...committed, blockId], { blobHTTPHeaders: { blobContentType: 'application/json' } })
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
