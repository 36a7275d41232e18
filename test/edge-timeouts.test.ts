// Deadlines the edge enforces on its own clock: a client that trickles a CONNECT byte by byte is
// still dropped 30 s after it connected.
import { afterEach, describe, expect, it, vi } from 'vitest'
import { DeviceEdge } from '../src/edge/device-edge.js'
import { fakeTransport } from './helpers/fake-transport.js'
import type { ShardPool } from '../src/shard-pool.js'
import type { Authenticator } from '../src/auth/authenticator.js'
import { createLogger } from '../src/log.js'

afterEach(() => { vi.useRealTimers() })

describe('edge deadlines', () => {
  it('a CONNECT trickled in byte by byte does not extend the 30 s deadline', () => {
    vi.useFakeTimers()
    const transport = fakeTransport()
    const edge = new DeviceEdge({} as Authenticator, { send: () => {} } as unknown as ShardPool, createLogger('silent'))
    const conn = edge.accept(transport)!
    // a CONNECT announcing 200 bytes, then one byte every 5 s
    conn.receive(Buffer.from([0x10, 0xc8, 0x01]))
    for (let i = 0; i < 5 && !transport.ended; i++) {
      vi.advanceTimersByTime(5000)
      conn.receive(Buffer.from([0]))
    }
    expect(transport.ended).toBe(false)
    vi.advanceTimersByTime(8000)
    expect(transport.ended).toBe(true)
    expect(conn.state).toBe('closed')
    edge.closeAll('test over')
  })

  it('keep-alive does not run out while the hub itself has stopped reading the connection', () => {
    vi.useFakeTimers()
    const transport = fakeTransport()
    const edge = new DeviceEdge({} as Authenticator, { send: () => {} } as unknown as ShardPool, createLogger('silent'))
    const conn = edge.accept(transport)!
    conn.state = 'connected' // as after CONNACK; the keep-alive check only looks at these fields
    conn.keepAliveMs = 1500
    conn.hold(true)
    vi.advanceTimersByTime(10_000)
    expect(transport.ended).toBe(false)
    conn.hold(false)
    vi.advanceTimersByTime(3000)
    expect(transport.ended).toBe(true)
    edge.closeAll('test over')
  })
})
