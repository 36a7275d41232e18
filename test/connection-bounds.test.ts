// Issue 10 items 6, 7, 10 and 11: every buffer of an MQTT connection has a bound. The edge and a
// connection on a fake transport, so each bound is hit exactly: what the hub wrote and the client
// has not read, twin requests awaiting answers, packets before CONNACK, the CONNECT of an
// unauthenticated client, and what a WebSocket client (which cannot be paused) sends while held.
import { afterEach, describe, expect, it, vi } from 'vitest'
import mqttPacket from 'mqtt-packet'
import { DeviceEdge, PREAUTH_BUDGET_BYTES, TELEMETRY_HIGH_WATER_BYTES } from '../src/edge/device-edge.js'
import {
  MAX_EARLY_BYTES, MAX_SUBSCRIBES_IN_FLIGHT, MAX_TELEMETRY_BYTES_IN_FLIGHT, MAX_TWIN_IN_FLIGHT, PREAUTH_FREE_BYTES, UNPAUSABLE_SLACK_BYTES, WRITE_DRAIN_TIMEOUT_MS, WRITE_HIGH_WATER_BYTES, WRITE_LIMIT_BYTES,
  type DeviceConnection,
} from '../src/mqtt/device-connection.js'
import { MAX_PENDING_PER_ADDRESS } from '../src/mqtt/admission.js'
import { remainingLength } from '../src/mqtt/packets.js'
import type { ShardPool } from '../src/shard-pool.js'
import type { Authenticator } from '../src/auth/authenticator.js'
import { createLogger } from '../src/log.js'
import { fakeTransport, type FakeTransport } from './helpers/fake-transport.js'

afterEach(() => { vi.useRealTimers() })

function setup() {
  const sent: unknown[][] = []
  const shards = { send: (_s: number, op: unknown[]) => { sent.push(op) }, shardFor: () => 0 } as unknown as ShardPool
  const auth = { authenticateDevice: (_p: string, deviceId: string) => ({ device: { deviceId, generationId: 'g' }, authMethod: 'sas', expiry: Date.now() / 1000 + 3600 }) } as unknown as Authenticator
  const edge = new DeviceEdge(auth, shards, createLogger('silent'))
  return { edge, sent }
}

/** A connection past CONNACK, as the shard's session open leaves it. */
let nextDevice = 0
function connected(edge: DeviceEdge, kind: 'tcp' | 'wss' = 'tcp'): { conn: DeviceConnection; t: FakeTransport } {
  const t = fakeTransport(kind)
  const conn = edge.accept(t)!
  const id = `dev-${nextDevice++}`
  conn.receive(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: id, clean: true, keepalive: 60,
    username: `localhost/${id}/?api-version=2021-04-12`, password: Buffer.from('token') } as mqttPacket.IConnectPacket))
  edge.sessionOpened(conn.id, false, [])
  expect(conn.state).toBe('connected')
  return { conn, t }
}

const publishPacket = (topic: string, bytes: number, qos: 0 | 1 = 0, messageId?: number) =>
  mqttPacket.generate({ cmd: 'publish', topic, payload: Buffer.alloc(bytes), qos, retain: false, dup: false, messageId } as mqttPacket.IPublishPacket)

describe('what the hub writes and the client does not read', () => {
  it('stops reading the client above the high-water mark and resumes once it drained', () => {
    const { edge } = setup()
    const { conn, t } = connected(edge)
    t.buffered = WRITE_HIGH_WATER_BYTES + 1
    conn.send(Buffer.alloc(10))
    expect(t.paused).toBe(true)
    t.buffered = WRITE_HIGH_WATER_BYTES // drained only a little: still above half
    t.drain()
    expect(t.paused).toBe(true)
    t.buffered = 0
    t.drain()
    expect(t.paused).toBe(false)
    expect(conn.state).toBe('connected')
    edge.closeAll('test over')
  })

  it('closes the connection past the write limit', () => {
    const { edge } = setup()
    const { conn, t } = connected(edge)
    t.buffered = WRITE_LIMIT_BYTES + 1
    conn.send(Buffer.alloc(10))
    expect(conn.state).toBe('closed')
    expect(t.ended).toBe(true)
    edge.closeAll('test over')
  })

  it(`closes a client that has not drained ${WRITE_DRAIN_TIMEOUT_MS / 1000} s after the hub stopped reading it`, () => {
    vi.useFakeTimers()
    const { edge } = setup()
    const { conn, t } = connected(edge)
    t.buffered = WRITE_HIGH_WATER_BYTES + 1
    conn.send(Buffer.alloc(10))
    vi.advanceTimersByTime(WRITE_DRAIN_TIMEOUT_MS - 1000)
    expect(conn.state).toBe('connected')
    vi.advanceTimersByTime(2000)
    expect(conn.state).toBe('closed')
    edge.closeAll('test over')
  })

  it(`stops reading while ${MAX_TWIN_IN_FLIGHT} twin requests wait for their answer`, () => {
    const { edge, sent } = setup()
    const { conn, t } = connected(edge)
    for (let i = 0; i < MAX_TWIN_IN_FLIGHT - 1; i++) conn.receive(publishPacket(`$iothub/twin/GET/?$rid=${i}`, 0))
    expect(t.paused).toBe(false)
    conn.receive(publishPacket('$iothub/twin/GET/?$rid=last', 0))
    expect(t.paused).toBe(true)
    expect(sent.filter((op) => op[0] === 9)).toHaveLength(MAX_TWIN_IN_FLIGHT)
    edge.publishFromShard(conn.id, '$iothub/twin/res/200/?$rid=0', Buffer.from('{}'), 0, 0, false)
    expect(t.paused).toBe(false)
    edge.closeAll('test over')
  })
})

describe('telemetry in flight, by bytes', () => {
  it(`stops only the connection that has more than ${MAX_TELEMETRY_BYTES_IN_FLIGHT} bytes in flight, QoS 0 included`, () => {
    const { edge } = setup()
    const flooder = connected(edge)
    const other = connected(edge)
    const big = Buffer.alloc(256 * 1024)
    for (let sent = 0; sent <= MAX_TELEMETRY_BYTES_IN_FLIGHT; sent += big.length) edge.telemetry(flooder.conn, 0, '', big, null)
    expect(flooder.t.paused).toBe(true)
    expect(other.t.paused).toBe(false)
    edge.telemetryDone([flooder.conn.id, 9, 9 * big.length])
    expect(flooder.t.paused).toBe(false)
    edge.closeAll('test over')
  })

  it(`holds every connection past ${TELEMETRY_HIGH_WATER_BYTES} bytes in flight hub-wide`, () => {
    const { edge } = setup()
    const big = Buffer.alloc(1024 * 1024)
    const conns = Array.from({ length: TELEMETRY_HIGH_WATER_BYTES / MAX_TELEMETRY_BYTES_IN_FLIGHT + 1 }, () => connected(edge))
    const bystander = connected(edge)
    for (const c of conns) for (let i = 0; i < MAX_TELEMETRY_BYTES_IN_FLIGHT / big.length; i++) edge.telemetry(c.conn, 0, '', big, null)
    expect(bystander.t.paused).toBe(true)
    edge.telemetryDone(conns.flatMap((c) => [c.conn.id, 2, 2 * big.length]))
    expect(bystander.t.paused).toBe(false)
    edge.closeAll('test over')
  })
})

describe('packets read after the hub stopped reading', () => {
  it('wait, and are replayed in order once it reads again (a read holds many packets; a pause only stops the next)', () => {
    const { edge, sent } = setup()
    const { conn, t } = connected(edge)
    conn.hold(true)
    conn.receive(Buffer.concat([0, 1, 2].map((i) => publishPacket(`$iothub/twin/GET/?$rid=${i}`, 0))))
    expect(t.paused).toBe(true)
    expect(sent.filter((op) => op[0] === 9)).toEqual([])
    conn.hold(false)
    expect(sent.filter((op) => op[0] === 9).map((op) => op[3])).toEqual(['0', '1', '2'])
    expect(t.paused).toBe(false)
    edge.closeAll('test over')
  })
})

describe('requests a client has in flight', () => {
  it(`stops reading while ${MAX_SUBSCRIBES_IN_FLIGHT} SUBSCRIBEs wait to be stored`, () => {
    const { edge, sent } = setup()
    const { conn, t } = connected(edge)
    const subscribe = (id: number) => mqttPacket.generate({ cmd: 'subscribe', messageId: id, subscriptions: [{ topic: '$iothub/twin/res/#', qos: 0 }] } as mqttPacket.ISubscribePacket)
    for (let i = 1; i < MAX_SUBSCRIBES_IN_FLIGHT; i++) conn.receive(subscribe(i))
    expect(t.paused).toBe(false)
    conn.receive(subscribe(MAX_SUBSCRIBES_IN_FLIGHT))
    expect(t.paused).toBe(true)
    expect(sent.filter((op) => op[0] === 3)).toHaveLength(MAX_SUBSCRIBES_IN_FLIGHT)
    edge.subscriptionStored(conn.id, 1, 0)
    expect(t.paused).toBe(false)
    expect(t.written.at(-1)).toEqual(Buffer.from([0x90, 3, 0, 1, 0]))
    edge.closeAll('test over')
  })

  it('passes on only the PUBACKs of C2D messages it sent (a PUBACK flood costs the shards nothing)', () => {
    const { edge, sent } = setup()
    const { conn } = connected(edge)
    const puback = (id: number) => mqttPacket.generate({ cmd: 'puback', messageId: id } as mqttPacket.IPubackPacket)
    for (let i = 1; i <= 1000; i++) conn.receive(puback(i))
    expect(sent.filter((op) => op[0] === 8)).toHaveLength(0)
    edge.publishFromShard(conn.id, `devices/${conn.deviceId}/messages/devicebound/`, Buffer.from('c2d'), 1, 7, false)
    conn.receive(Buffer.concat([puback(7), puback(7), puback(8)]))
    expect(sent.filter((op) => op[0] === 8)).toEqual([[8, conn.id, 7]])
    edge.closeAll('test over')
  })
})

describe('a WebSocket client, which cannot be paused', () => {
  it(`is closed when it sends more than ${UNPAUSABLE_SLACK_BYTES} bytes while the hub holds it`, () => {
    const { edge } = setup()
    const { conn, t } = connected(edge, 'wss')
    conn.hold(true)
    const chunk = publishPacket(`devices/${conn.deviceId}/messages/events/`, 64 * 1024)
    let sent = 0
    while (conn.state === 'connected' && sent <= UNPAUSABLE_SLACK_BYTES + chunk.length) {
      conn.receive(chunk)
      sent += chunk.length
    }
    expect(conn.state).toBe('closed')
    expect(sent).toBeGreaterThan(UNPAUSABLE_SLACK_BYTES)
    expect(t.ended).toBe(true)
    edge.closeAll('test over')
  })

  it('is not closed for what it sends while it is read normally', () => {
    const { edge } = setup()
    const { conn } = connected(edge, 'wss')
    const chunk = publishPacket(`devices/${conn.deviceId}/messages/events/`, 64 * 1024)
    for (let sent = 0; sent <= 2 * UNPAUSABLE_SLACK_BYTES; sent += chunk.length) conn.receive(chunk)
    expect(conn.state).toBe('connected')
    edge.closeAll('test over')
  })
})

describe('before the connection is authenticated', () => {
  it(`closes a client that sends more than ${MAX_EARLY_BYTES} bytes between CONNECT and CONNACK`, () => {
    const { edge } = setup()
    const t = fakeTransport()
    const conn = edge.accept(t)!
    conn.receive(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'dev', clean: true, keepalive: 60,
      username: 'localhost/dev/?api-version=2021-04-12', password: Buffer.from('token') } as mqttPacket.IConnectPacket))
    expect(conn.state).toBe('authenticating') // the shard has not answered the session open
    const chunk = publishPacket(`devices/${conn.deviceId}/messages/events/`, 200 * 1024, 1, 1)
    for (let i = 0; i < 10 && conn.state !== 'closed'; i++) conn.receive(chunk)
    expect(conn.state).toBe('closed')
    edge.closeAll('test over')
  })

  it('reads a large CONNECT only while the hub-wide pre-auth budget lasts, and gets it back on close', () => {
    const { edge } = setup()
    const big = 300 * 1024
    // the fixed header of a CONNECT announcing `big` bytes, nothing more yet
    const header = Buffer.from([0x10, ...remainingLength(big)])
    const fits = Math.floor(PREAUTH_BUDGET_BYTES / big)
    const conns = Array.from({ length: fits + 1 }, () => edge.accept(fakeTransport())!)
    for (const c of conns) c.receive(header)
    expect(conns.slice(0, fits).every((c) => c.state === 'awaiting-connect')).toBe(true)
    expect(conns[fits]!.state).toBe('closed')
    conns[0]!.close('test')
    const again = edge.accept(fakeTransport())!
    again.receive(header)
    expect(again.state).toBe('awaiting-connect')
    // a small CONNECT needs nothing from the budget
    const small = edge.accept(fakeTransport())!
    small.receive(Buffer.from([0x10, ...remainingLength(PREAUTH_FREE_BYTES)]))
    expect(small.state).toBe('awaiting-connect')
    edge.closeAll('test over')
  })

  it(`admits at most ${MAX_PENDING_PER_ADDRESS} unauthenticated WebSocket connections per address`, () => {
    const { edge } = setup()
    const pending = Array.from({ length: MAX_PENDING_PER_ADDRESS }, () => edge.accept(fakeTransport('wss', '10.0.0.1')))
    expect(pending.every((c) => c !== undefined)).toBe(true)
    expect(edge.accept(fakeTransport('wss', '10.0.0.1'))).toBeUndefined()
    expect(edge.accept(fakeTransport('wss', '10.0.0.2'))).toBeDefined() // another address is not affected
    pending[0]!.close('test')
    expect(edge.accept(fakeTransport('wss', '10.0.0.1'))).toBeDefined()
    edge.closeAll('test over')
  })

  it('an I/O thread\'s edge admits its share: 3 threads together no more than one edge', () => {
    const shards = { send: () => {}, shardFor: () => 0 } as unknown as ShardPool
    const edges = [0, 1, 2].map((thread) => new DeviceEdge({} as Authenticator, shards, createLogger('silent'), 'wasm', undefined, { thread: thread + 1, threads: 3 }))
    let admitted = 0
    for (const edge of edges) while (edge.accept(fakeTransport('wss', '10.0.0.9')) && admitted < 2 * MAX_PENDING_PER_ADDRESS) admitted++
    expect(admitted).toBe(3 * Math.ceil(MAX_PENDING_PER_ADDRESS / 3))
    for (const edge of edges) edge.closeAll('test over')
  })
})

describe('a credential valid for longer than a timer can wait', () => {
  it('keeps the connection past 24.8 days and closes it when the credential ends, naming it', () => {
    // timeouts and the clock only: the edge's once-a-second sweep stays on real time and does not run
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] })
    const sent: unknown[][] = []
    const shards = { send: (_s: number, op: unknown[]) => { sent.push(op) }, shardFor: () => 0 } as unknown as ShardPool
    const days = 60
    const auth = { authenticateDevice: (_p: string, deviceId: string) => ({
      device: { deviceId, generationId: 'g' }, authMethod: '{"scope":"device","type":"x509Certificate"}', expiry: Date.now() / 1000 + days * 86_400 - 300,
    }) } as unknown as Authenticator
    const edge = new DeviceEdge(auth, shards, createLogger('silent'))
    const { conn } = connected(edge)
    let reason = ''
    const close = conn.close.bind(conn)
    conn.close = (r: string, f?: Record<string, unknown>, g?: boolean) => { reason ||= r; close(r, f, g) }
    vi.advanceTimersByTime((days - 1) * 86_400_000)
    expect(conn.state).toBe('connected')
    vi.advanceTimersByTime(2 * 86_400_000)
    expect([conn.state, reason]).toEqual(['closed', 'client certificate expired'])
    edge.closeAll('test over')
  })
})
