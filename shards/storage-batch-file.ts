// The file side of a storage endpoint partition: a batch is staged in a file of its own outside the
// endpoint's tree (`{dataDir}/endpoint-staging/{name}/{p}.jsonl`), then moved into its Azure-named
// file in one step: renamed when the file is new, else appended after truncating the file back to
// the length it had before (so a move a crash interrupted is redone exactly once). Nothing here holds
// more than a stream chunk in memory.
import { createReadStream } from 'node:fs'
import { appendFile, mkdir, open, rename, rm, stat } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { PublishIntent } from './outbox-cursors.js'

export class StagedBatch {
  private hasDirectory = false

  constructor(readonly path: string) {}

  async append(text: string | Buffer): Promise<void> {
    if (!this.hasDirectory) {
      await mkdir(dirname(this.path), { recursive: true })
      this.hasDirectory = true
    }
    await appendFile(this.path, text)
  }

  async exists(): Promise<boolean> {
    return (await sizeOf(this.path)) >= 0
  }

  async discard(): Promise<void> {
    await rm(this.path, { force: true })
  }

  /** Makes the staged bytes durable before a cursor names them. */
  async sync(): Promise<void> {
    const h = await open(this.path, 'r+')
    try { await h.sync() } finally { await h.close() }
  }

  /** Moves the staged batch into `intent.file`; when this resolves the batch is durably there and the stage is gone. */
  async moveInto(intent: PublishIntent): Promise<void> {
    const dir = dirname(intent.file)
    await mkdir(dir, { recursive: true })
    if (intent.base < 0) {
      await rename(this.path, intent.file)
      await syncDirectory(dir)
      return
    }
    // bytes past `base` are an earlier, interrupted attempt at this very batch (a file removed meanwhile starts empty)
    const size = await sizeOf(intent.file)
    const out = await open(intent.file, size < 0 ? 'w' : 'r+')
    try {
      let position = Math.min(intent.base, Math.max(size, 0))
      await out.truncate(position)
      for await (const chunk of createReadStream(this.path, { highWaterMark: 256 * 1024 })) {
        const bytes = chunk as Buffer
        for (let done = 0; done < bytes.length;) {
          const { bytesWritten } = await out.write(bytes, done, bytes.length - done, position)
          done += bytesWritten
          position += bytesWritten
        }
      }
      await out.sync()
    } finally {
      await out.close()
    }
    await this.discard()
  }
}

/** The file's size, or -1 when there is none. */
export async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return -1
    throw e
  }
}

async function syncDirectory(dir: string): Promise<void> {
  const h = await open(dir, 'r')
  try { await h.sync() } finally { await h.close() }
}
