// The frame guard between a TLS socket and rhea, and the outgoing budget on top of it, driven by a
// fake socket: framing is followed byte by byte and across any split, bad sizes are refused before
// their bytes pass, and producers stop and resume with what the socket and rhea hold.
import { EventEmitter } from 'node:events'
import type tls from 'node:tls'
import type rhea from 'rhea'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { AmqpFrameGuard, type FrameViolation } from '../src/amqp/frame-guard.js'
import { OutgoingBudget } from '../src/amqp/outgoing-budget.js'
import { AMQP_HEADER, SASL_HEADER, frame, frameHeader, openFrame } from './helpers/amqp-client.js'

const MAX_FRAME = 4096

class FakeSocket extends EventEmitter {
  writableLength = 0
  destroyed = false
  writableEnded = false
  authorized = false
  isPaused = false
  private flushes: (() => void)[] = []
  write(b: Buffer, flushed: () => void): boolean {
    this.writableLength += b.length
    this.flushes.push(flushed)
    return true
  }
  /** The kernel takes everything queued. */
  flush(): void {
    this.writableLength = 0
    for (const f of this.flushes.splice(0)) f()
  }
  end(): void { this.writableEnded = true }
  destroy(): void { this.destroyed = true }
  pause(): void { this.isPaused = true }
  resume(): void { this.isPaused = false }
}

function guarded(o: { maxUnauthenticatedBytes?: number } = {}) {
  const socket = new FakeSocket()
  const violations: FrameViolation[] = []
  const guard = new AmqpFrameGuard(socket as unknown as tls.TLSSocket, {
    maxFrameBytes: MAX_FRAME, maxUnauthenticatedBytes: o.maxUnauthenticatedBytes ?? 1 << 30, closeGraceMs: 1000,
    onViolation: (v) => violations.push(v),
  })
  const forwarded: Buffer[] = []
  guard.on('data', (b: Buffer) => forwarded.push(Buffer.from(b)))
  return { socket, guard, violations, passed: () => Buffer.concat(forwarded) }
}

/** Deterministic pseudo-random chunk sizes (mulberry32). */
function splits(total: number, seed: number): number[] {
  let a = seed
  const random = () => {
    a = (a + 0x6d2b79f5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const sizes: number[] = []
  for (let left = total; left > 0;) {
    const n = Math.min(left, 1 + Math.floor(random() * 64))
    sizes.push(n)
    left -= n
  }
  return sizes
}

function feed(socket: FakeSocket, stream: Buffer, sizes: number[]): void {
  let at = 0
  for (const n of sizes) {
    socket.emit('data', stream.subarray(at, at + n))
    at += n
  }
}

describe('frame guard', () => {
  // SASL frames, the second protocol header, an open, a heartbeat and a frame on channel 1
  const stream = Buffer.concat([
    SASL_HEADER, frame(Buffer.alloc(40, 1), 1), frame(Buffer.alloc(20, 2), 1),
    AMQP_HEADER, openFrame(), frame(), frame(Buffer.alloc(MAX_FRAME - 8, 3), 0, 1),
  ])

  it('passes a SASL then AMQP stream on unchanged, byte by byte and in random splits', () => {
    const patterns = [Array.from({ length: stream.length }, () => 1), ...Array.from({ length: 50 }, (_, seed) => splits(stream.length, seed + 1))]
    for (const sizes of patterns) {
      const g = guarded()
      feed(g.socket, stream, sizes)
      expect(g.violations).toEqual([])
      expect(g.passed().equals(stream)).toBe(true)
    }
  })

  it('refuses a frame over max-frame-size before passing on any of it beyond its size, wherever the chunks split', () => {
    const good = Buffer.concat([AMQP_HEADER, frame(Buffer.alloc(100))])
    const bad = Buffer.concat([frameHeader(MAX_FRAME + 1), Buffer.alloc(200, 9)])
    const all = Buffer.concat([good, bad])
    for (let at = 1; at < all.length; at++) {
      const g = guarded()
      feed(g.socket, all, [at, all.length - at])
      g.socket.emit('data', Buffer.alloc(10)) // nothing after a violation reaches rhea
      expect(g.violations).toEqual(['frame-too-large'])
      // a size that straddles the chunks was passed on in part before it was complete
      const expected = at >= good.length && at < good.length + 4 ? at : good.length
      expect(g.passed().equals(all.subarray(0, expected))).toBe(true)
    }
  })

  it('takes "AMQP" for a protocol header only after a SASL one', () => {
    const g = guarded()
    g.socket.emit('data', Buffer.concat([AMQP_HEADER, frame(), AMQP_HEADER]))
    expect(g.violations).toEqual(['frame-too-large'])
    expect(g.passed().equals(Buffer.concat([AMQP_HEADER, frame()]))).toBe(true)
  })

  it('refuses a frame smaller than its header and a protocol header that is not AMQP', () => {
    const small = guarded()
    small.socket.emit('data', Buffer.concat([AMQP_HEADER, frameHeader(7)]))
    expect(small.violations).toEqual(['frame-too-small'])
    const http = guarded()
    http.socket.emit('data', Buffer.from('GET / HTTP/1.1\r\n'))
    expect(http.violations).toEqual(['bad-protocol-header'])
    expect(http.passed().length).toBe(0)
  })

  it('bounds what arrives before authentication, and only then', () => {
    const heartbeats = Buffer.concat(Array.from({ length: 8 }, () => frame()))
    const before = guarded({ maxUnauthenticatedBytes: 64 })
    before.socket.emit('data', AMQP_HEADER)
    before.socket.emit('data', heartbeats)
    expect(before.violations).toEqual(['unauthenticated-input-over-bound'])
    expect(before.passed().equals(AMQP_HEADER)).toBe(true)
    const after = guarded({ maxUnauthenticatedBytes: 64 })
    after.socket.emit('data', AMQP_HEADER)
    after.guard.authenticated()
    for (let i = 0; i < 100; i++) after.socket.emit('data', heartbeats)
    expect(after.violations).toEqual([])
  })

  it('tells rhea once, as an end, that the socket closed', () => {
    const g = guarded()
    const ends: unknown[] = []
    g.guard.on('end', () => ends.push(1))
    g.socket.emit('close')
    g.socket.emit('close')
    expect(ends).toEqual([1])
  })
})

describe('outgoing budget', () => {
  afterEach(() => { vi.useRealTimers() })

  /** rhea's session as the budget reads it, and deliveries on it. */
  function session() {
    const s = { local: { channel: 0 }, connection: { local_channel_map: {} as Record<string, unknown> }, outgoing: { next_pending_delivery: 0 } }
    s.connection.local_channel_map[0] = s
    let id = 0
    return { s, delivery: () => ({ id: id++, link: { session: s } }) as unknown as rhea.Delivery }
  }

  function budgeted(bound = 1000, stallMs = 5000) {
    const g = guarded()
    const events: string[] = []
    const budget = new OutgoingBudget(g.guard, {
      maxOutgoingBufferedBytes: bound, outgoingStallTimeoutMs: stallMs,
      onStalled: () => events.push('stalled'), onError: (e) => { throw e }, onBackedUp: () => events.push('backed up'),
    })
    return { ...g, budget, events }
  }

  it('stops producers at the bound and resumes them once rhea wrote and the kernel took it', () => {
    vi.useFakeTimers()
    const b = budgeted()
    const { s, delivery } = session()
    b.budget.queued(delivery(), 600)
    expect(b.budget.hasRoom()).toBe(true)
    b.budget.queued(delivery(), 600)
    expect(b.budget.hasRoom()).toBe(false)
    b.budget.whenRoom(() => b.events.push('resumed'))
    // rhea writes both: the bytes move from its queue to the socket's, still held
    s.outgoing.next_pending_delivery = 2
    b.guard.write(Buffer.alloc(1200))
    vi.runOnlyPendingTimers()
    expect(b.budget.heldBytes()).toBe(1200)
    expect(b.events).toEqual(['backed up'])
    b.socket.flush()
    vi.runOnlyPendingTimers()
    expect(b.events).toEqual(['backed up', 'resumed'])
    expect(b.budget.peakBytes).toBe(1200)
  })

  it('forgets what rhea held for a session that ended', () => {
    const b = budgeted()
    const { s, delivery } = session()
    b.budget.queued(delivery(), 1200)
    expect(b.budget.hasRoom()).toBe(false)
    delete s.connection.local_channel_map[0]
    expect(b.budget.hasRoom()).toBe(true)
  })

  it('reports a socket that stays backed up past the stall deadline, not one that drains in time', () => {
    vi.useFakeTimers()
    const draining = budgeted(1000, 5000)
    draining.guard.write(Buffer.alloc(1200))
    vi.advanceTimersByTime(4000)
    draining.socket.flush()
    vi.advanceTimersByTime(2000)
    expect(draining.events).toEqual(['backed up'])
    const stuck = budgeted(1000, 5000)
    stuck.guard.write(Buffer.alloc(1200))
    vi.advanceTimersByTime(6000)
    expect(stuck.events).toEqual(['backed up', 'stalled'])
  })

  it('stops reading the peer while its socket alone is over the bound, and reads again below half of it', () => {
    vi.useFakeTimers()
    const b = budgeted(1000)
    b.guard.write(Buffer.alloc(1000))
    vi.runOnlyPendingTimers()
    expect(b.socket.isPaused).toBe(true)
    b.socket.flush()
    vi.runOnlyPendingTimers()
    expect(b.socket.isPaused).toBe(false)
  })
})
