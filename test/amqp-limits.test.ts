// The AMQP port holds every connection to its bounds, before and after it authenticates: deadlines
// for the TLS handshake, the AMQP open and the first token; frame, message and pre-token sizes;
// sessions and links; connections per address; output a peer does not read. And nothing a peer sends
// reaches stderr or the log through rhea's diagnostics.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import type tls from 'node:tls'
import rhea from 'rhea'
import type { AmqpLimits } from '../src/amqp/amqp-limits.js'
import { partitionOf } from '../src/shard-protocol.js'
import { MqttTestClient } from './helpers/mqtt-test-client.js'
import { startTestHub, type TestHub } from './helpers/test-hub.js'
import {
  AMQP_HEADER, amqpConnect, closeError, closeOf, firstBytes, frame, frameHeader, logTap, next, openFrame, putToken, tcpConnect, tlsConnect,
} from './helpers/amqp-client.js'

type Tap = ReturnType<typeof logTap>

async function hubWith(amqpLimits: Partial<AmqpLimits>): Promise<{ t: TestHub; tap: Tap }> {
  if (!process.env.NODE_EXTRA_CA_CERTS) throw new Error('run through `npm test` (NODE_EXTRA_CA_CERTS)')
  const tap = logTap()
  const t = await startTestHub({}, { logRecords: tap.records, amqpLimits })
  return { t, tap }
}

/** The hub's name for the peer at the other end of `socket`. */
function peerOf(socket: { localPort?: number }): string {
  return `127.0.0.1:${socket.localPort}`
}

function socketOf(conn: rhea.Connection): tls.TLSSocket {
  return (conn as unknown as { socket: tls.TLSSocket }).socket
}

function dropped(tap: Tap, reason: string, peer?: string) {
  return tap.waitFor((r) => r.msg === 'amqp connection dropped' && r.reason === reason && (peer === undefined || r.peer === peer))
}

describe('amqp limits - deadlines', () => {
  let t: TestHub
  let tap: Tap
  beforeAll(async () => ({ t, tap } = await hubWith({ handshakeTimeoutMs: 500, openTimeoutMs: 500, cbsTimeoutMs: 1000 })))
  afterAll(() => t.stop())

  it('a TCP connection that never sends a ClientHello is closed at the handshake deadline', async () => {
    const socket = await tcpConnect(t.hub.ports.amqp!)
    await closeOf(socket)
    await tap.waitFor((r) => r.msg === 'amqp connection refused' && r.reason === 'handshake-timeout')
  })

  it('a ClientHello trickled a byte at a time does not hold the handshake past its deadline', async () => {
    const timeouts = () => tap.records.filter((r) => r.msg === 'amqp connection refused' && r.reason === 'handshake-timeout').length
    const before = timeouts()
    const socket = await tcpConnect(t.hub.ports.amqp!)
    let isClosed = false
    void closeOf(socket).then(() => { isClosed = true })
    // a TLS record announcing a long ClientHello (TLS 1.2, then its random), sent one byte every 20 ms:
    // each byte would restart an idle timeout
    const hello = Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x3e, 0x80, 0x01, 0x00, 0x3e, 0x7c, 0x03, 0x03]), Buffer.alloc(32, 0x5a)])
    for (let i = 0; i < 200 && !isClosed; i++) {
      socket.write(hello.subarray(i % hello.length, (i % hello.length) + 1))
      await new Promise((r) => setTimeout(r, 20))
    }
    expect(isClosed).toBe(true)
    await tap.waitFor(() => timeouts() > before)
  })

  it('a connection that sends no AMQP open is closed at the open deadline', async () => {
    const socket = await tlsConnect(t.hub.ports.amqp!, t.ca)
    const peer = peerOf(socket)
    socket.write(AMQP_HEADER)
    await closeOf(socket)
    await dropped(tap, 'open-timeout', peer)
  })

  it('a connection that puts no valid token is closed at the CBS deadline with amqp:unauthorized-access', async () => {
    const conn = await amqpConnect(t.hub.ports.amqp!, t.ca)
    const error = closeError(conn)
    const forged = t.serviceToken().replace(/sig=[^&]+/, 'sig=bm9wZQ%3D%3D')
    expect(await putToken(conn, forged, 'localhost')).toBe(401)
    expect(await error).toMatchObject({ condition: 'amqp:unauthorized-access' })
  })

  it('a valid token lifts the CBS deadline', async () => {
    const authenticated = await amqpConnect(t.hub.ports.amqp!, t.ca)
    expect(await putToken(authenticated, t.serviceToken(), 'localhost')).toBe(200)
    // one opened later, without a token: once its deadline passed, the first one's has too
    const anonymous = await amqpConnect(t.hub.ports.amqp!, t.ca)
    expect(await closeError(anonymous)).toMatchObject({ condition: 'amqp:unauthorized-access' })
    expect(await putToken(authenticated, t.serviceToken(), 'localhost')).toBe(200)
    authenticated.close()
  })
})

describe('amqp limits - connections per address', () => {
  let t: TestHub
  let tap: Tap
  beforeAll(async () => ({ t, tap } = await hubWith({ maxUnauthenticatedPerAddress: 2, maxConnectionsPerAddress: 4 })))
  afterAll(() => t.stop())

  const closedByHub = (socket: tls.TLSSocket) => {
    const peer = peerOf(socket)
    return tap.waitFor((r) => r.msg === 'amqp connection closed' && r.peer === peer)
  }

  it('refuses connections beyond the unauthenticated and the total bound, counting authenticated ones only in the total', async () => {
    const port = t.hub.ports.amqp!
    const first = await amqpConnect(port, t.ca)
    expect(await putToken(first, t.serviceToken(), 'localhost')).toBe(200)
    const u1 = await tlsConnect(port, t.ca)
    const u2 = await tlsConnect(port, t.ca)
    await expect(tlsConnect(port, t.ca)).rejects.toMatchObject({ code: 'ECONNRESET', message: 'Client network socket disconnected before secure TLS connection was established' })
    await tap.waitFor((r) => r.msg === 'amqp connection refused' && r.reason === 'too-many-unauthenticated')
    // the two admitted are served
    u1.write(AMQP_HEADER)
    expect(await firstBytes(u1, 8)).toEqual(AMQP_HEADER)
    for (const u of [u1, u2]) {
      const gone = closedByHub(u)
      u.destroy()
      await gone
    }
    const second = await amqpConnect(port, t.ca)
    expect(await putToken(second, t.serviceToken(), 'localhost')).toBe(200)
    const third = await amqpConnect(port, t.ca)
    expect(await putToken(third, t.serviceToken(), 'localhost')).toBe(200)
    const u3 = await tlsConnect(port, t.ca) // the fourth connection, the only unauthenticated one
    await expect(tlsConnect(port, t.ca)).rejects.toMatchObject({ code: 'ECONNRESET', message: 'Client network socket disconnected before secure TLS connection was established' })
    await tap.waitFor((r) => r.msg === 'amqp connection refused' && r.reason === 'too-many-connections')
    u3.destroy()
    for (const c of [first, second, third]) c.close()
  })
})

describe('amqp limits - sizes, counts and output', () => {
  const BOUND = 256 * 1024
  const EVENT_BYTES = 60_000
  const EVENTS = 200
  const DEVICE = 'limits-dev'
  let t: TestHub
  let tap: Tap
  beforeAll(async () => {
    ({ t, tap } = await hubWith({
      maxSessionsPerConnection: 4, maxLinksPerConnection: 6, maxMessageBytes: 128 * 1024, maxOutgoingBufferedBytes: BOUND, outgoingStallTimeoutMs: 3000,
    }))
    const { primaryKey } = await t.createDevice(DEVICE)
    const { client } = await MqttTestClient.connect({ port: t.hub.ports.mqttTcp!, clientId: DEVICE, password: t.deviceToken(DEVICE, primaryKey) })
    // 12 MB on one partition: far more than the kernel's socket buffers hold, so a reader that stops backs the hub up
    for (let i = 0; i < EVENTS; i++) await client.publish(`devices/${DEVICE}/messages/events/`, Buffer.alloc(EVENT_BYTES, i), 1)
    await client.disconnect()
  })
  afterAll(() => t.stop())

  it('a frame header claiming more than max-frame-size closes the connection before any of the frame is held', async () => {
    const socket = await tlsConnect(t.hub.ports.amqp!, t.ca)
    const peer = peerOf(socket)
    socket.write(Buffer.concat([AMQP_HEADER, frameHeader(0xfffffff0)]))
    await closeOf(socket)
    await dropped(tap, 'frame-too-large', peer)
    const closed = await tap.waitFor((r) => r.msg === 'amqp connection closed' && r.peer === peer)
    expect(closed.receivedBytes).toBe(16)
  })

  it('after the open, a frame over max-frame-size is answered with amqp:connection:framing-error', async () => {
    const conn = await amqpConnect(t.hub.ports.amqp!, t.ca)
    expect(conn.max_frame_size).toBe(64 * 1024)
    expect(await putToken(conn, t.serviceToken(), 'localhost')).toBe(200)
    const error = closeError(conn)
    socketOf(conn).write(Buffer.concat([frameHeader(64 * 1024 + 1), Buffer.alloc(1024)]))
    expect(await error).toMatchObject({ condition: 'amqp:connection:framing-error' })
  })

  it('more than the pre-token bound sent before a token closes the connection', async () => {
    const heartbeats = (bytes: number) => Buffer.concat(Array.from({ length: bytes / 8 }, () => frame()))
    // under the bound the hub still answers
    const ok = await tlsConnect(t.hub.ports.amqp!, t.ca)
    ok.write(Buffer.concat([AMQP_HEADER, heartbeats(56 * 1024), openFrame()]))
    const answer = await firstBytes(ok, 16)
    expect(answer.subarray(0, 8)).toEqual(AMQP_HEADER)
    ok.destroy()
    const over = await tlsConnect(t.hub.ports.amqp!, t.ca)
    const peer = peerOf(over)
    over.write(Buffer.concat([AMQP_HEADER, heartbeats(72 * 1024)]))
    await closeOf(over)
    await dropped(tap, 'unauthenticated-input-over-bound', peer)
  })

  it('a session beyond the bound is ended with amqp:resource-limit-exceeded', async () => {
    const conn = await amqpConnect(t.hub.ports.amqp!, t.ca)
    const sessions = Array.from({ length: 4 }, () => conn.create_session())
    for (const s of sessions) s.begin()
    await Promise.all(sessions.map((s) => next(s, 'session_open')))
    const extra = conn.create_session()
    const ended = next(extra, 'session_close')
    extra.begin()
    await ended
    expect(extra.error).toMatchObject({ condition: 'amqp:resource-limit-exceeded' })
    // the others still serve
    const sender = sessions[3]!.attach_sender({ target: { address: '$cbs' } })
    await next(sender, 'sender_open')
    conn.close()
  })

  it('a link beyond the bound is detached with amqp:resource-limit-exceeded', async () => {
    const conn = await amqpConnect(t.hub.ports.amqp!, t.ca)
    const session = conn.create_session()
    session.begin()
    const links = Array.from({ length: 6 }, (_, i) => session.attach_sender({ name: `link-${i}`, target: { address: '$cbs' } }))
    await Promise.all(links.map((l) => next(l, 'sender_open')))
    const extra = session.attach_sender({ name: 'link-6', target: { address: '$cbs' } })
    await next(extra, 'sender_close')
    expect(extra.error).toMatchObject({ condition: 'amqp:resource-limit-exceeded' })
    for (const l of links) expect(l.is_open()).toBe(true)
    conn.close()
  })

  it('a message reassembled past the cap detaches its link with amqp:link:message-size-exceeded', async () => {
    const conn = await amqpConnect(t.hub.ports.amqp!, t.ca)
    expect(await putToken(conn, t.serviceToken(), 'localhost')).toBe(200)
    const sender = conn.open_sender({ target: { address: '/messages/devicebound' } })
    await next(sender, 'sendable')
    // 100 KiB arrives in two frames, is reassembled and handled (and refused for its unknown device)
    const refused = next(sender, 'rejected')
    sender.send({ to: '/devices/nobody/messages/devicebound', body: rhea.message.data_section(Buffer.alloc(100 * 1024, 6)) })
    expect((await refused).delivery!.remote_state).toMatchObject({ error: { condition: 'amqp:not-found' } })
    // 200 KiB arrives in four frames of at most 64 KiB; the third takes it past 128 KiB
    const detached = next(sender, 'sender_close')
    sender.send({ to: '/devices/nobody/messages/devicebound', body: rhea.message.data_section(Buffer.alloc(200 * 1024, 7)) })
    await detached
    expect(sender.error).toMatchObject({ condition: 'amqp:link:message-size-exceeded' })
    // the connection goes on
    expect(await putToken(conn, t.serviceToken(), 'localhost')).toBe(200)
    conn.close()
  })

  async function stoppedReceiver(): Promise<{ conn: rhea.Connection; receiver: rhea.Receiver; peer: string }> {
    const conn = await amqpConnect(t.hub.ports.amqp!, t.ca)
    expect(await putToken(conn, t.serviceToken(), 'localhost')).toBe(200)
    const address = `${t.hub.eventHubName}/ConsumerGroups/$Default/Partitions/${partitionOf(DEVICE, 4)}`
    const receiver = conn.open_receiver({ source: { address }, credit_window: 0 })
    await next(receiver, 'receiver_open')
    const socket = socketOf(conn)
    socket.pause() // stop reading TCP, then ask for everything
    receiver.add_credit(1_000_000)
    return { conn, receiver, peer: peerOf(socket) }
  }

  it('a receiver that grants huge credit and stops reading holds the hub to its output bound, and gets everything once it reads', async () => {
    const { conn, receiver, peer } = await stoppedReceiver()
    await tap.waitFor((r) => r.msg === 'amqp output waits for the peer' && r.peer === peer)
    let received = 0
    const all = new Promise<void>((resolve) => receiver.on('message', () => { if (++received === EVENTS) resolve() }))
    socketOf(conn).resume()
    await all
    const closed = tap.waitFor((r) => r.msg === 'amqp connection closed' && r.peer === peer)
    conn.close()
    // one event (with its annotations) may go past the bound before the producer looks again
    expect((await closed).peakOutgoingBytes).toBeLessThanOrEqual(BOUND + EVENT_BYTES + 4096)
  })

  it('a receiver that never reads again is dropped at the stall deadline', async () => {
    const { conn, peer } = await stoppedReceiver()
    await dropped(tap, 'output-stalled', peer)
    const closed = await tap.waitFor((r) => r.msg === 'amqp connection closed' && r.peer === peer)
    expect(closed.peakOutgoingBytes).toBeLessThanOrEqual(BOUND + EVENT_BYTES + 4096)
    socketOf(conn).destroy()
  })

  describe('rhea diagnostics', () => {
    function spyConsole() {
      const spies = (['error', 'warn', 'log', 'trace'] as const).map((m) => vi.spyOn(console, m).mockImplementation(() => {}))
      return { calls: () => spies.flatMap((s) => s.mock.calls), restore: () => spies.forEach((s) => s.mockRestore()) }
    }

    function secretsOf(token: string): string[] {
      const sig = decodeURIComponent(/sig=([^&]+)/.exec(token)![1]!)
      const hexBytes = (s: string) => [...Buffer.from(s)].map((b) => `0x${b.toString(16).padStart(2, '0')}`).join(',')
      return [token, sig, encodeURIComponent(sig), Buffer.from(token).toString('hex'), hexBytes(sig)]
    }

    it('a protocol error with a SAS token in the read buffer reaches neither stderr nor the log', async () => {
      const token = t.serviceToken()
      const console = spyConsole()
      try {
        const socket = await tlsConnect(t.hub.ports.amqp!, t.ca)
        const peer = peerOf(socket)
        // a frame of an unknown type, carrying the token: rhea fails reading it with the token in its buffer
        socket.write(Buffer.concat([AMQP_HEADER, frame(Buffer.from(token), 9)]))
        await closeOf(socket) // rhea reports the error before it ends the socket
        expect(console.calls()).toEqual([])
        await tap.waitFor((r) => r.msg === 'amqp protocol error' && r.peer === peer)
      } finally {
        console.restore()
      }
      const text = JSON.stringify(tap.records)
      for (const s of secretsOf(token)) expect(text).not.toContain(s)
    })

    it('a put-token body that is no message section reaches neither stderr nor the log', async () => {
      const token = t.serviceToken()
      const console = spyConsole()
      try {
        const conn = await amqpConnect(t.hub.ports.amqp!, t.ca)
        const receiver = conn.open_receiver({ source: { address: '$cbs' }, target: { address: 'cbs-raw' } })
        const sender = conn.open_sender({ target: { address: '$cbs' } })
        await Promise.all([next(receiver, 'receiver_open'), next(sender, 'sendable')])
        const reply = next(receiver, 'message')
        // a bare AMQP string (str32) where a message's sections belong: rhea would print it as JSON
        const text = Buffer.from(token)
        const head = Buffer.alloc(5)
        head[0] = 0xb1
        head.writeUInt32BE(text.length, 1)
        sender.send(Buffer.concat([head, text]), undefined, 0)
        expect((await reply).message!.application_properties!['status-code']).toBe(401)
        conn.close()
        expect(console.calls()).toEqual([])
      } finally {
        console.restore()
      }
      expect(tap.records.some((r) => r.msg === 'amqp library diagnostic' && r.text === 'WARNING: expected described message section got')).toBe(true)
      const text = JSON.stringify(tap.records)
      for (const s of secretsOf(token)) expect(text).not.toContain(s)
    })
  })
})
