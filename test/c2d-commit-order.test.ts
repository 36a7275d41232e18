// Issue 10 item 4: what a crash must not undo is committed before anyone is told. A C2D delivery's
// count is in LMDB before its PUBLISH leaves; a completion and its feedback record commit in one
// transaction before the feedback is announced; the service's feedback queue commits a delivery
// count before it hands records out and a removal before it answers complete.
import { afterAll, describe, expect, it } from 'vitest'
import { C2dQueues, type FeedbackKey, type StoredFeedback } from '../shards/c2d-queue.js'
import { ServiceBoundQueue, type FeedbackRecord } from '../src/c2d/service-bound-queue.js'
import { tempStore } from './helpers/temp-store.js'

const temp = tempStore()
const { store, committed } = temp
afterAll(() => temp.close())

describe('C2D deliveries and completions', () => {
  it('commits the delivery count before the PUBLISH, and the removal with its feedback before announcing it', async () => {
    const seen: { count: number | undefined }[] = []
    const announced: { key: FeedbackKey; stillQueued: boolean; feedbackStored: boolean }[] = []
    const q: C2dQueues = new C2dQueues({ root: store.root, c2d: store.c2d, c2dSequences: store.c2dSequences, feedback: store.feedback, shardIndex: 3 }, {
      publish: () => seen.push({ count: committed(() => (store.c2d.get(['order-dev', 1]) as { deliveryCount: number } | undefined)?.deliveryCount) }),
      feedback: (key: FeedbackKey, _stored: StoredFeedback) => announced.push({
        key, stillQueued: committed(() => store.c2d.get(['order-dev', 1]) !== undefined), feedbackStored: committed(() => store.feedback.get(key) !== undefined),
      }),
      count: () => {},
      writable: () => true,
      writeFailed: (e) => { throw e },
    })
    await q.send('order-dev', 'gen', { messageId: 'm1', ack: 'full', properties: {}, body: Buffer.from('x') })
    q.attach('order-dev', 1)
    await q.committed()
    expect(seen).toEqual([{ count: 1 }])
    q.puback(1, 1)
    await q.committed()
    expect(announced).toEqual([{ key: [expect.any(Number), 3, 0], stillQueued: false, feedbackStored: true }])
    await store.feedback.remove(announced[0]!.key) // the next test starts with an empty queue
  })
})

describe('the service feedback queue', () => {
  it('commits the delivery count before handing records out, and the removal before complete answers', async () => {
    const key = [Date.now(), 0, 99]
    const stored = { record: { originalMessageId: 'fb-1', enqueuedTimeUtc: new Date().toISOString(), statusCode: 'Success', description: 'Success', deviceId: 'd', deviceGenerationId: 'g' }, enqueued: Date.now(), deliveries: 0 }
    await store.feedback.put(key, stored)
    const queue = new ServiceBoundQueue<FeedbackRecord>(store.root, store.feedback)
    const m = await queue.receive()
    expect(m?.records.map((r) => r.originalMessageId)).toEqual(['fb-1'])
    expect(committed(() => (store.feedback.get(key) as { deliveries: number }).deliveries)).toBe(1)
    await queue.complete(m!.lockToken)
    expect(committed(() => store.feedback.get(key))).toBeUndefined()
    await expect(queue.complete(m!.lockToken)).rejects.toThrow(`the lock ${m!.lockToken} is unknown or has expired`)
  })
})
