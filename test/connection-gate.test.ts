// The connection gate on a TLS listener: a handshake deadline from the TCP accept, and per address
// bounds on unauthenticated and on all connections, released as sockets close.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type tls from 'node:tls'
import { afterEach, describe, expect, it } from 'vitest'
import { createTlsListener } from '../src/mqtt/listeners.js'
import type { DeviceEdge } from '../src/edge/device-edge.js'
import { Admission } from '../src/mqtt/admission.js'
import { ConnectionGate, type GateRefusal, type GateTicket } from '../src/tls/connection-gate.js'
import { closeOf, firstBytes, tcpConnect, tlsConnect } from './helpers/amqp-client.js'
import { TEST_PKI } from './helpers/test-hub.js'

const key = readFileSync(join(TEST_PKI, 'server.key'), 'utf8')
const cert = readFileSync(join(TEST_PKI, 'server.pem'), 'utf8')
const ca = readFileSync(join(TEST_PKI, 'ca.pem'), 'utf8')

interface Served { socket: tls.TLSSocket; ticket: GateTicket; closed: Promise<void> }

/** A gated TLS echo-ish server: a client that writes "auth" is authenticated and told "ok". */
async function gatedServer(limits: { handshakeTimeoutMs?: number; maxUnauthenticatedPerAddress?: number; maxConnectionsPerAddress?: number }) {
  const refusals: GateRefusal[] = []
  const served: Served[] = []
  const gate = new ConnectionGate({
    handshakeTimeoutMs: 10_000, maxUnauthenticatedPerAddress: 100, maxConnectionsPerAddress: 1000, ...limits,
    onRefused: (_address, reason) => refusals.push(reason),
  })
  const server = gate.createServer({ key, cert }, (socket, ticket) => {
    socket.on('data', (d: Buffer) => {
      if (d.toString() !== 'auth') return
      ticket.authenticated()
      socket.write('ok')
    })
    served.push({ socket, ticket, closed: new Promise((resolve) => socket.once('close', () => resolve())) })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  const stop = () => {
    for (const s of served) s.socket.destroy()
    gate.destroyHandshaking()
    return new Promise<void>((resolve) => server.close(() => resolve()))
  }
  return { gate, port, refusals, served, stop }
}

let stops: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const s of stops) await s()
  stops = []
})

describe('connection gate', () => {
  it('destroys a socket that has not finished its handshake by the deadline, and forgets it', async () => {
    const s = await gatedServer({ handshakeTimeoutMs: 200 })
    stops.push(s.stop)
    const raw = await tcpConnect(s.port)
    await closeOf(raw)
    expect(s.refusals).toEqual(['handshake-timeout'])
    expect(s.gate.countsOf('127.0.0.1')).toEqual({ unauthenticated: 0, total: 0 })
  })

  it('a handshake that finishes in time is served after the deadline has passed', async () => {
    const s = await gatedServer({ handshakeTimeoutMs: 200 })
    stops.push(s.stop)
    const client = await tlsConnect(s.port, ca)
    // a later connection that never handshakes marks the deadline: once it is gone, the first one's has passed too
    await closeOf(await tcpConnect(s.port))
    client.write('auth')
    expect((await firstBytes(client, 2)).toString()).toBe('ok')
    client.destroy()
  })

  it('bounds unauthenticated and total connections per address, and frees their places as they close', async () => {
    const s = await gatedServer({ maxUnauthenticatedPerAddress: 2, maxConnectionsPerAddress: 4 })
    stops.push(s.stop)
    const authenticate = async (socket: tls.TLSSocket) => {
      socket.write('auth')
      expect((await firstBytes(socket, 2)).toString()).toBe('ok')
    }
    const a = await tlsConnect(s.port, ca)
    await authenticate(a)
    const b = await tlsConnect(s.port, ca)
    const c = await tlsConnect(s.port, ca)
    expect(s.gate.countsOf('127.0.0.1')).toEqual({ unauthenticated: 2, total: 3 })
    await expect(tlsConnect(s.port, ca)).rejects.toMatchObject({ code: 'ECONNRESET' })
    expect(s.refusals).toEqual(['too-many-unauthenticated'])
    await authenticate(b)
    const d = await tlsConnect(s.port, ca)
    expect(s.gate.countsOf('127.0.0.1')).toEqual({ unauthenticated: 2, total: 4 })
    await expect(tlsConnect(s.port, ca)).rejects.toMatchObject({ code: 'ECONNRESET' })
    expect(s.refusals).toEqual(['too-many-unauthenticated', 'too-many-connections'])
    c.destroy()
    await s.served[2]!.closed
    expect(s.gate.countsOf('127.0.0.1')).toEqual({ unauthenticated: 1, total: 3 })
    const e = await tlsConnect(s.port, ca)
    expect(s.gate.countsOf('127.0.0.1')).toEqual({ unauthenticated: 2, total: 4 })
    for (const x of [a, b, d, e]) x.destroy()
  })
})

describe('the MQTT TLS listener', () => {
  it('drops a connection that never starts its handshake, and serves one that does', async () => {
    const accepted: string[] = []
    const edge = { admission: new Admission(), accept: () => { accepted.push('tls'); return { receive: () => {}, lost: () => {} } } } as unknown as DeviceEdge
    const server = createTlsListener(edge, key, cert, undefined, 200)
    stops.push(() => new Promise<void>((resolve) => server.close(() => resolve())))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as { port: number }).port
    const client = await tlsConnect(port, ca)
    await closeOf(await tcpConnect(port))
    expect(accepted).toEqual(['tls'])
    expect(client.destroyed).toBe(false)
    client.destroy()
  })
})
