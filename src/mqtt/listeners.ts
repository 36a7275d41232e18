// Where MQTT bytes come from: TLS on 8883 (node:tls: uWS has no raw TCP server), optional plain TCP
// for local use and benchmarks, and WebSocket at /$iothub/websocket (subprotocol mqtt) on the uWS app.
import net from 'node:net'
import type tls from 'node:tls'
import type { TemplatedApp, WebSocket } from 'uWebSockets.js'
import { ConnectionGate } from '../tls/connection-gate.js'
import { MAX_PACKET_BYTES, type DeviceConnection } from './device-connection.js'
import type { MqttEdge } from './mqtt-edge.js'
import { socketTransport, type MqttTransport } from './transport.js'

/** Connection storms: Node's default backlog of 511 resets connections under load. */
const BACKLOG = 4096

function attach(socket: net.Socket, kind: 'tls' | 'tcp', edge: MqttEdge): void {
  socket.setNoDelay(true)
  const conn = edge.accept(socketTransport(socket, kind))
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

export function createTlsListener(edge: MqttEdge, key: string, cert: string, handshakeTimeoutMs = TLS_HANDSHAKE_TIMEOUT_MS): tls.Server {
  // only the handshake deadline: bounds per address would need to know which connections CONNECTed
  const gate = new ConnectionGate({ handshakeTimeoutMs, maxUnauthenticatedPerAddress: Infinity, maxConnectionsPerAddress: Infinity })
  return gate.createServer({ key, cert }, (socket) => attach(socket, 'tls', edge))
}

export function createTcpListener(edge: MqttEdge): net.Server {
  return net.createServer((socket) => attach(socket, 'tcp', edge))
}

interface WsMqtt { conn?: DeviceConnection; closed: boolean }

function wsTransport(ws: WebSocket<WsMqtt>, remoteAddress: string): MqttTransport {
  const data = ws.getUserData()
  return {
    kind: 'wss',
    remoteAddress,
    write: (b) => { if (!data.closed) ws.send(b, true) },
    // uWS corks inside its own callbacks; acks are already one buffer per connection
    cork: () => {},
    uncork: () => {},
    pause: () => {},
    resume: () => {},
    end: () => { if (!data.closed) { data.closed = true; ws.end(1000) } },
  }
}

export function mountMqttOverWebSocket(app: TemplatedApp, edge: MqttEdge): void {
  app.ws<WsMqtt>('/$iothub/websocket', {
    maxPayloadLength: MAX_PACKET_BYTES + 1024,
    maxBackpressure: 8 * 1024 * 1024,
    idleTimeout: 0, // MQTT keep-alive governs idleness
    upgrade: (res, req, context) => {
      const protocols = req.getHeader('sec-websocket-protocol').split(',').map((p) => p.trim())
      if (!protocols.includes('mqtt')) {
        res.writeStatus('400 Bad Request').end('MQTT over WebSocket needs the subprotocol "mqtt"')
        return
      }
      res.upgrade<WsMqtt>({ closed: false }, req.getHeader('sec-websocket-key'), 'mqtt', req.getHeader('sec-websocket-extensions'), context)
    },
    open: (ws) => {
      const data = ws.getUserData()
      data.conn = edge.accept(wsTransport(ws, Buffer.from(ws.getRemoteAddressAsText()).toString()))
    },
    message: (ws, message) => {
      // the ArrayBuffer is only valid during this callback: copy it
      ws.getUserData().conn?.receive(Buffer.from(new Uint8Array(message)))
    },
    close: (ws) => {
      const data = ws.getUserData()
      data.closed = true
      data.conn?.lost()
    },
  })
}
