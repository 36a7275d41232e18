// The edge bounds telemetry in flight to the shards: QoS 0 has no acknowledgement to wait for, so
// without this a fast publisher fills the hub's memory faster than the shards commit.
import { describe, expect, it } from 'vitest'
import { DeviceEdge, TELEMETRY_HIGH_WATER } from '../src/edge/device-edge.js'
import { fakeTransport } from './helpers/fake-transport.js'
import type { ShardPool } from '../src/shard-pool.js'
import type { Authenticator } from '../src/auth/authenticator.js'
import { createLogger } from '../src/log.js'

function transport() {
  const pipe = fakeTransport()
  return { t: pipe, pipe }
}

describe('edge backpressure', () => {
  it('stops every connection reading above the high-water mark and resumes at the low one', () => {
    const sent: unknown[][] = []
    const shards = { send: (_shard: number, op: unknown[]) => { sent.push(op) } } as unknown as ShardPool
    const edge = new DeviceEdge({} as Authenticator, shards, createLogger('silent'))
    const a = transport(), b = transport()
    const connA = edge.accept(a.pipe)!
    edge.accept(b.pipe)
    for (let i = 0; i < TELEMETRY_HIGH_WATER; i++) edge.telemetry(connA, 0, '', Buffer.alloc(0), null)
    expect(a.t.paused || b.t.paused).toBe(false)
    edge.telemetry(connA, 0, '', Buffer.alloc(0), null)
    expect(a.t.paused && b.t.paused).toBe(true)
    // a connection accepted while holding waits too
    const c = transport()
    edge.accept(c.pipe)
    expect(c.t.paused).toBe(true)
    edge.telemetryDone([connA.id, TELEMETRY_HIGH_WATER / 4, 0])
    expect(a.t.paused).toBe(true)
    edge.telemetryDone([connA.id, TELEMETRY_HIGH_WATER / 2, 0])
    expect(a.t.paused || b.t.paused || c.t.paused).toBe(false)
    expect(sent).toHaveLength(TELEMETRY_HIGH_WATER + 1)
    edge.closeAll('test over')
  })
})
