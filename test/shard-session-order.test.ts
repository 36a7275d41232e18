// A takeover across I/O threads: the new connection's session open reaches the shard through the
// main thread, the old connection's close and session end through its own I/O thread, so they can
// arrive in either order. A real shard worker (ShardPool) is given the late order directly: the old
// connection's SESSION_END after the new one opened must not end the new one's clean session.
import { rmSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ShardPool, type ShardEvents } from '../src/shard-pool.js'
import { CONN_ID_STRIDE, OP_CONNECTION_CLOSED, OP_DEVICE_CHANGED, OP_SESSION_END, OP_SESSION_OPEN, OP_SUBSCRIBE } from '../src/shard-protocol.js'
import { defaultRoutingConfig } from '../src/routing/routing-config.js'
import { tempDir } from './helpers/test-hub.js'

const dataDir = tempDir()
const opened = new Map<number, (v: { present: boolean; filters: string[]; errorCode: number }) => void>()
const stored = new Map<number, () => void>()
const published = new Map<number, (topic: string) => void>()
const ignore = () => {}
const events: ShardEvents = {
  acks: ignore, telemetryDone: ignore, publish: (connId, topic) => published.get(connId)?.(topic), c2dCount: ignore, feedback: ignore, partitionAdvanced: ignore, rejected: ignore, log: ignore,
  sessionOpened: (connId, present, filters, errorCode) => opened.get(connId)?.({ present, filters, errorCode }),
  subscriptionStored: (connId) => stored.get(connId)?.(),
  fatal: (_shard, e) => { throw e },
}
let pool: ShardPool
beforeAll(async () => {
  pool = new ShardPool({
    shardCount: 1, partitions: 2, retentionDays: 1, dataDir, durability: 'process', hubName: 'localhost', routing: defaultRoutingConfig(),
    minFreeDiskBytes: 0, allowPrivateWebhooks: true, blobStore: false,
  }, events)
  await pool.start()
})
afterAll(async () => {
  await pool.stop()
  rmSync(dataDir, { recursive: true, force: true })
})

/** Opens a session for connection `connId` (ids of I/O threads 1 and 2) and waits for the shard's answer. */
function open(connId: number, clean: boolean): Promise<{ present: boolean; filters: string[]; errorCode: number }> {
  const answer = new Promise<{ present: boolean; filters: string[]; errorCode: number }>((resolve) => opened.set(connId, resolve))
  pool.send(0, [OP_SESSION_OPEN, connId, 'order-dev', clean, 'order-dev', 'g1', '{"scope":"device","type":"sas","issuer":"iothub"}', '', ''])
  return answer
}

describe('a shard given a takeover out of order', () => {
  it('ignores the SESSION_END of the connection a newer one replaced: the new clean session keeps working', async () => {
    pool.send(0, [OP_DEVICE_CHANGED, 'order-dev', 'g1', true])
    const a = CONN_ID_STRIDE + 1 // I/O thread 1
    const b = 2 * CONN_ID_STRIDE + 2 // I/O thread 2
    expect((await open(a, true)).errorCode).toBe(0)
    expect((await open(b, true)).errorCode).toBe(0)
    // the old connection's close and session end arrive only now
    pool.send(0, [OP_CONNECTION_CLOSED, a])
    pool.send(0, [OP_SESSION_END, 'order-dev', a])
    const subscribed = new Promise<void>((resolve) => stored.set(b, resolve))
    pool.send(0, [OP_SUBSCRIBE, b, 'order-dev', [['devices/order-dev/messages/devicebound/#', 1]], 7])
    await subscribed
    // b's session holds the subscription: a C2D message is delivered to b
    const delivered = new Promise<string>((resolve) => published.set(b, resolve))
    await pool.request('c2d.send', 'order-dev', 'g1', { ack: 'none', properties: {}, body: Buffer.from('to b') })
    expect(await delivered).toMatch(/^devices\/order-dev\/messages\/devicebound\//)
  })
})
