// Issue 18 review: the export's blob writer holds at most two blocks of about its block size, however
// the lines come, and commits the blocks in order.
import { describe, expect, it } from 'vitest'
import type { BlockBlobClient } from '@azure/storage-blob'
import { BlockBlobWriter } from '../src/jobs/block-blob-writer.js'

describe('BlockBlobWriter', () => {
  it('stages blocks of about the block size, at most two held, and commits them in order', async () => {
    const staged: { id: string; bytes: number }[] = []
    let inFlight = 0
    let most = 0
    const release: (() => void)[] = []
    const blob = {
      stageBlock: (id: string, _body: Buffer, bytes: number) => {
        staged.push({ id, bytes })
        most = Math.max(most, ++inFlight)
        return new Promise<void>((resolve) => release.push(() => { inFlight--; resolve() }))
      },
      commitBlockList: async (ids: string[]) => { expect(ids).toEqual(staged.map((s) => s.id)) },
    } as unknown as BlockBlobClient
    // the store answers each stage a moment later
    const answering = setInterval(() => release.shift()?.(), 1)
    const w = new BlockBlobWriter(blob, new AbortController().signal, 64 * 1024)
    const line = 'x'.repeat(10_000) + '\n'
    for (let i = 0; i < 100; i++) await w.write(line)
    await w.commit()
    clearInterval(answering)
    expect(staged.reduce((a, s) => a + s.bytes, 0)).toBe(100 * line.length)
    expect(Math.max(...staged.map((s) => s.bytes))).toBeLessThan(64 * 1024 + line.length)
    expect(most).toBeLessThanOrEqual(2)
  })
})
