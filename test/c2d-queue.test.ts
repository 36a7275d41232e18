// The shard's C2D queue on its own (LMDB in a temp dir): lock timeout and redelivery, which the
// end-to-end tests cannot wait a minute for, over MQTT and over HTTPS (lock tokens).
import { rmSync } from 'node:fs'
import { afterAll, describe, expect, it } from 'vitest'
import { C2dQueues, LOCK_TIMEOUT_MS, type C2dHooks } from '../shards/c2d-queue.js'
import { HubError } from '../src/rest/hub-error.js'
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

  it('a connection that opened while an older one held the lock gets the message when the older one closes', async () => {
    const published: { connId: number; packetId: number }[] = []
    const q = new C2dQueues({ root: store.root, c2d: store.c2d, c2dSequences: store.c2dSequences, feedback: store.feedback, shardIndex: 0 }, {
      publish: (connId, _t, _p, _q, packetId) => published.push({ connId, packetId }),
      feedback: () => {}, count: () => {}, writable: () => true, writeFailed: (e) => { throw e },
    })
    await q.send('race-dev', 'gen-1', { messageId: 'r-1', ack: 'none', properties: {}, body: Buffer.from('x') })
    q.attach('race-dev', 1)
    await q.committed()
    // across I/O threads the new connection's open can reach the shard before the old one's close
    q.attach('race-dev', 2)
    await q.committed()
    expect(published.map((p) => p.connId)).toEqual([1])
    q.detach(1)
    await q.committed()
    expect(published.map((p) => p.connId)).toEqual([1, 2])
    q.puback(2, published[1]!.packetId)
    await q.committed()
    expect(await q.receive('race-dev')).toBeNull()
  })

  it('HTTPS: a lock token settles once; after the lock timeout it is 412002 and the message is received again, counted', async () => {
    const feedback: Record<string, string>[] = []
    const published: string[] = []
    const hooks: C2dHooks = {
      publish: (_c, topic) => published.push(topic), feedback: (_key, stored) => feedback.push(stored.record),
      count: () => {}, writable: () => true, writeFailed: (e) => { throw e },
    }
    const q = new C2dQueues({ root: store.root, c2d: store.c2d, c2dSequences: store.c2dSequences, feedback: store.feedback, shardIndex: 0 }, hooks)
    await q.send('http-lock', 'gen-1', { messageId: 'h-1', ack: 'full', properties: {}, body: Buffer.from('x') })
    await q.send('http-lock', 'gen-1', { messageId: 'h-2', ack: 'full', properties: {}, body: Buffer.from('y') })
    const first = (await q.receive('http-lock'))!
    expect({ mid: first.messageId, count: first.deliveryCount }).toEqual({ mid: 'h-1', count: 1 })
    // a locked message is skipped: the next receive gets the next one
    const second = (await q.receive('http-lock'))!
    expect(second.messageId).toBe('h-2')
    expect(await q.receive('http-lock')).toBeNull()
    // nor does a subscriber get what HTTPS holds
    q.attach('http-lock', 9)
    await q.committed()
    expect(published).toEqual([])
    q.detach(9)
    q.sweep(Date.now() + LOCK_TIMEOUT_MS + 1)
    const lost = await q.settleLocked('http-lock', first.lockToken, 'complete').catch((e: unknown) => e)
    expect(lost).toEqual(new HubError(412002, `no message of device http-lock is locked under ${first.lockToken}: it was settled, or its lock expired`))
    const again = (await q.receive('http-lock'))!
    expect({ mid: again.messageId, count: again.deliveryCount, fresh: again.lockToken !== first.lockToken }).toEqual({ mid: 'h-1', count: 2, fresh: true })
    await q.settleLocked('http-lock', again.lockToken, 'complete')
    await expect(q.settleLocked('http-lock', again.lockToken, 'complete')).rejects.toMatchObject({ code: 412002 })
    const third = (await q.receive('http-lock'))!
    await q.settleLocked('http-lock', third.lockToken, 'reject')
    expect(feedback.map((f) => [f.originalMessageId, f.statusCode])).toEqual([['h-1', 'Success'], ['h-2', 'Rejected']])
    expect(await q.receive('http-lock')).toBeNull()
  })

  it('HTTPS abandon hands the message to the device\'s MQTT subscription at once', async () => {
    const published: { topic: string }[] = []
    const q = new C2dQueues({ root: store.root, c2d: store.c2d, c2dSequences: store.c2dSequences, feedback: store.feedback, shardIndex: 0 }, {
      publish: (_c, topic) => published.push({ topic }), feedback: () => {}, count: () => {}, writable: () => true, writeFailed: (e) => { throw e },
    })
    await q.send('http-mqtt', 'gen-1', { messageId: 'hm-1', ack: 'none', properties: {}, body: Buffer.from('x') })
    const held = (await q.receive('http-mqtt'))!
    q.attach('http-mqtt', 11)
    await q.committed()
    expect(published).toEqual([])
    await q.settleLocked('http-mqtt', held.lockToken, 'abandon')
    await q.committed()
    expect(published.map((p) => p.topic)).toEqual([expect.stringContaining('%24.mid=hm-1')])
  })
})
