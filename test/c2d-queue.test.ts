// The shard's C2D queue on its own (LMDB in a temp dir): lock timeout and redelivery, which the
// end-to-end tests cannot wait a minute for.
import { rmSync } from 'node:fs'
import { afterAll, describe, expect, it } from 'vitest'
import { C2dQueues, LOCK_TIMEOUT_MS } from '../shards/c2d-queue.js'
import { openHubStore } from '../src/store/hub-store.js'
import { tempDir } from './helpers/test-hub.js'

const dir = tempDir()
const store = openHubStore(dir)
afterAll(async () => { await store.close(); rmSync(dir, { recursive: true, force: true }) })

describe('C2dQueues', () => {
  it('redelivers a message whose lock expired with the same packet id, flagged DUP (issue 12), and completes it on its PUBACK', async () => {
    const published: { topic: string; packetId: number; dup: boolean }[] = []
    const feedback: Record<string, string>[] = []
    const q = new C2dQueues({ root: store.root, c2d: store.c2d, c2dSequences: store.c2dSequences, feedback: store.feedback, shardIndex: 0 }, {
      publish: (_c, topic, _p, _q, packetId, dup) => published.push({ topic, packetId, dup }),
      feedback: (_key, stored) => feedback.push(stored.record),
      count: () => {},
      writable: () => true,
      writeFailed: (e) => { throw e },
    })
    await q.send('lock-dev', 'gen-1', { messageId: 'lk-1', ack: 'positive', properties: {}, body: Buffer.from('x') })
    await q.send('lock-dev', 'gen-1', { messageId: 'lk-2', ack: 'none', properties: {}, body: Buffer.from('y') })
    q.attach('lock-dev', 7)
    // the delivery count is committed before the PUBLISH leaves
    expect(published).toHaveLength(0)
    await q.committed()
    expect(published.map((p) => p.dup)).toEqual([false, false])
    q.sweep(Date.now() + LOCK_TIMEOUT_MS + 1)
    await q.committed()
    expect(published).toHaveLength(4)
    // MQTT: a message sent again keeps its packet id and says DUP
    expect(published.slice(2).map((p) => ({ packetId: p.packetId, dup: p.dup }))).toEqual(published.slice(0, 2).map((p) => ({ packetId: p.packetId, dup: true })))
    q.puback(7, published[0]!.packetId)
    await q.committed()
    expect(feedback).toEqual([expect.objectContaining({ originalMessageId: 'lk-1', statusCode: 'Success', deviceGenerationId: 'gen-1' })])
  })
})
