// Writes a block blob a piece at a time: lines gather into blocks of about 4 MiB, each staged
// (stageBlock) while the next fills, and the blob appears whole at commit (commitBlockList), so a
// job that fails or is cancelled leaves the previous blob in place. At most two blocks are held.
import type { BlockBlobClient } from '@azure/storage-blob'

export const BLOCK_BYTES = 4 * 1024 * 1024
/** Azure's limit of blocks in one blob (at 4 MiB each, about 195 GiB) */
const MAX_BLOCKS = 50_000

export class BlockBlobWriter {
  private parts: string[] = []
  private bytes = 0
  private readonly ids: string[] = []
  private staging: Promise<unknown> = Promise.resolve()
  /** bytes handed to the store so far */
  written = 0

  constructor(private readonly blob: BlockBlobClient, private readonly signal: AbortSignal, private readonly blockBytes = BLOCK_BYTES) {}

  /** Adds text; when a block is full, resolves once the block before it is staged (so memory stays at two blocks). */
  async write(text: string): Promise<void> {
    this.parts.push(text)
    this.bytes += Buffer.byteLength(text)
    if (this.bytes >= this.blockBytes) await this.stage()
  }

  private async stage(): Promise<void> {
    if (this.bytes === 0) return
    const body = Buffer.from(this.parts.join(''))
    this.parts = []
    this.bytes = 0
    if (this.ids.length >= MAX_BLOCKS) throw new Error(`the blob would need more than ${MAX_BLOCKS} blocks of ${this.blockBytes} bytes`)
    // ids of one length, as the service requires
    const id = Buffer.from(`hyperhub-block-${String(this.ids.length).padStart(6, '0')}`).toString('base64')
    this.ids.push(id)
    await this.staging
    const staged = this.blob.stageBlock(id, body, body.length, { abortSignal: this.signal })
    // handled here so a failure while the next block fills is no unhandled rejection; awaited (and thrown) by the next stage or commit
    staged.catch(() => {})
    this.staging = staged
    this.written += body.length
  }

  /** Stages what is left and commits the blob (an empty one when nothing was written). */
  async commit(contentType = 'text/plain; charset=utf-8'): Promise<void> {
    await this.stage()
    await this.staging
    await this.blob.commitBlockList(this.ids, { blobHTTPHeaders: { blobContentType: contentType }, abortSignal: this.signal })
  }
}
