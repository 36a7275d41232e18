// Where MQTT bytes come from: TLS on 8883 (node:tls: uWS has no raw TCP server), optional plain TCP
// for local use and benchmarks, and WebSocket at /$iothub/websocket (subprotocol mqtt) on the uWS app
// (edge/websocket-endpoints.ts).
import type { X509Certificate } from 'node:crypto'
import net from 'node:net'
import type tls from 'node:tls'
import type { WebSocket } from 'uWebSockets.js'
import { ConnectionGate } from '../tls/connection-gate.js'
import type { DeviceConnection } from './device-connection.js'
import type { DeviceEdge } from '../edge/device-edge.js'
import { socketTransport, type MqttTransport } from './transport.js'
import type { ListenerResumption } from '../tls/session-resumption.js'

/** Connection storms: Node's default backlog of 511 resets connections under load. */
const BACKLOG = 4096
/** uWS send results */
const DROPPED = 2

function attach(socket: net.Socket, kind: 'tls' | 'tcp', edge: DeviceEdge): void {
  // a TLS socket's raw socket was admitted as it was accepted, before its handshake
  if (kind === 'tcp') edge.admission.admitRaw(socket)
  if (socket.destroyed) return
  socket.setNoDelay(true)
  const conn = edge.accept(socketTransport(socket, kind))
  if (!conn) { socket.destroy(); return }
  socket.on('data', (chunk: Buffer) => conn.receive(chunk))
  socket.on('error', () => {}) // 'close' follows and does the work
  socket.on('close', () => conn.lost())
}

export function listen(server: net.Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) => reject(e)
    server.once('error', onError)
    server.listen({ port, host, backlog: BACKLOG }, () => {
      server.off('error', onError)
      resolve((server.address() as net.AddressInfo).port)
    })
  })
}

/** TCP accept → end of the TLS handshake: a socket that never sends a ClientHello must not stay open. */
export const TLS_HANDSHAKE_TIMEOUT_MS = 10_000

export function createTlsListener(edge: DeviceEdge, key: string, cert: string, resumption?: ListenerResumption, handshakeTimeoutMs = TLS_HANDSHAKE_TIMEOUT_MS): tls.Server {
  // the gate keeps the handshake deadline; the edge's admission bounds the connections per address
  // that have not authenticated yet (it needs the CONNECT outcome)
  const gate = new ConnectionGate({ handshakeTimeoutMs, maxUnauthenticatedPerAddress: Infinity, maxConnectionsPerAddress: Infinity })
  // a client certificate is asked for and checked by the hub itself at CONNECT (X.509 devices: a
  // thumbprint, not a chain to a public CA), so the handshake takes any or none
  const server = gate.createServer({ key, cert, requestCert: true, rejectUnauthorized: false, ...resumption?.serverOptions('mqtt') }, (socket) => attach(socket, 'tls', edge))
  server.on('connection', (raw: net.Socket) => edge.admission.admitRaw(raw))
  resumption?.attach(server)
  return server
}

export function createTcpListener(edge: DeviceEdge): net.Server {
  return net.createServer((socket) => attach(socket, 'tcp', edge))
}

/** What a WebSocket carrying MQTT holds (websocket-endpoints.ts mounts the route). */
export interface WsMqtt { conn?: DeviceConnection; closed: boolean; drained?: () => void }

export function wsTransport(ws: WebSocket<WsMqtt>, remoteAddress: string, peerCertificates?: () => X509Certificate[] | undefined): MqttTransport {
  const data = ws.getUserData()
  const end = () => { if (!data.closed) { data.closed = true; ws.end(1000) } }
  return {
    kind: 'wss',
    remoteAddress,
    ...(peerCertificates ? { peerCertificates } : {}),
    pausable: false,
    get bufferedBytes() { return data.closed ? 0 : ws.getBufferedAmount() },
    // a send uWS did not take would leave a hole in the MQTT byte stream: the connection ends
    write: (b) => { if (!data.closed && ws.send(b, true) === DROPPED) end() },
    // uWS corks inside its own callbacks; acks are already one buffer per connection
    cork: () => {},
    uncork: () => {},
    pause: () => {},
    resume: () => {},
    onDrain: (listener) => { data.drained = listener },
    end,
  }
}
