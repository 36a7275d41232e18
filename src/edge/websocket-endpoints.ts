// The hub's WebSocket endpoints on its HTTPS port, as Azure's are on 443: `/$iothub/websocket`
// carries MQTT (subprotocol `mqtt`, MqttWs) or AMQP (`AMQPWSB10`, AmqpWs for devices and the
// service client), `/$servicebus/websocket` carries AMQP for the Event Hubs client. AMQP over a
// WebSocket runs on the same engine and bounds as on 5671 (amqp/websocket-stream.ts).
import type { HttpRequest, HttpResponse, TemplatedApp, us_socket_context_t, WebSocket } from 'uWebSockets.js'
import type { AmqpServer } from '../amqp/amqp-server.js'
import { HeldInputBudget, WebSocketByteStream } from '../amqp/websocket-stream.js'
import { MAX_PACKET_BYTES, UNPAUSABLE_SLACK_BYTES, WRITE_LIMIT_BYTES } from '../mqtt/device-connection.js'
import { wsTransport, type WsMqtt } from '../mqtt/listeners.js'
import type { DeviceEdge } from './device-edge.js'
import type { FrontPeer, HttpsFront } from '../tls/https-front.js'

export const AMQP_WS_PROTOCOL = 'AMQPWSB10'
const MQTT_WS_PROTOCOL = 'mqtt'

interface WsSocket extends WsMqtt {
  protocol: 'mqtt' | 'amqp'
  stream?: WebSocketByteStream
  /** who is at the other end of the TLS front */
  peer: FrontPeer
}

/**
 * While the hub holds an AMQP connection, what its peer may still send: the credit it had (a device's
 * telemetry link: 64 messages of up to 256 KB) and a few frames more. A peer with more links than
 * that in flight at once is closed when held.
 */
const AMQP_HELD_SLACK_BYTES = 64 * 256 * 1024 + 4 * UNPAUSABLE_SLACK_BYTES
/** ... and all of them together: past it, the connection whose bytes would not fit is closed */
export const AMQP_HELD_HUB_BYTES = 128 * 1024 * 1024


/** Mounts the endpoints; returns what held AMQP WebSockets keep, hub-wide (for /metrics). */
export function mountWebSockets(app: TemplatedApp, edge: DeviceEdge, amqp: AmqpServer, front: Pick<HttpsFront, 'peerOf'>): HeldInputBudget {
  const heldBudget = new HeldInputBudget(AMQP_HELD_HUB_BYTES)
  const upgrade = (allowed: readonly string[]) => (res: HttpResponse, req: HttpRequest, context: us_socket_context_t) => {
    const peer = front.peerOf(res.getProxiedRemoteAddress())
    if (!peer) return void res.close() // came round the TLS front
    const offered = req.getHeader('sec-websocket-protocol').split(',').map((p) => p.trim())
    const protocol = allowed.find((p) => offered.includes(p))
    if (!protocol) {
      res.writeStatus('400 Bad Request').end(`a WebSocket here needs the subprotocol ${allowed.map((p) => `"${p}"`).join(' or ')}`)
      return
    }
    res.upgrade<WsSocket>({ protocol: protocol === AMQP_WS_PROTOCOL ? 'amqp' : 'mqtt', closed: false, peer }, req.getHeader('sec-websocket-key'), protocol,
      req.getHeader('sec-websocket-extensions'), context)
  }
  const handlers = {
    // MQTT packets and AMQP frames (at most 64 KB, the max-frame-size the hub announces) fit
    maxPayloadLength: MAX_PACKET_BYTES + 1024,
    // connections close themselves past WRITE_LIMIT_BYTES; uWS must never drop a send below that
    maxBackpressure: WRITE_LIMIT_BYTES + MAX_PACKET_BYTES,
    idleTimeout: 0, // MQTT keep-alive and AMQP's own deadlines govern idleness
    open: (ws: WebSocket<WsSocket>) => {
      const data = ws.getUserData()
      if (data.protocol === 'amqp') {
        data.stream = new WebSocketByteStream(ws, data.peer.address, AMQP_HELD_SLACK_BYTES, heldBudget, () => data.peer.certificates())
        if (!amqp.acceptWebSocket(data.stream)) { data.closed = true; ws.end(1013, 'too many connections from this address') }
        return
      }
      data.conn = edge.accept(wsTransport(ws, data.peer.address, () => data.peer.certificates()))
      if (!data.conn) { data.closed = true; ws.end(1013, 'too many connections from this address') }
    },
    message: (ws: WebSocket<WsSocket>, message: ArrayBuffer) => {
      // the ArrayBuffer is only valid during this callback: copy it
      const bytes = Buffer.from(new Uint8Array(message))
      const data = ws.getUserData()
      if (data.stream) data.stream.received(bytes)
      else data.conn?.receive(bytes)
    },
    drain: (ws: WebSocket<WsSocket>) => {
      const data = ws.getUserData()
      if (data.stream) data.stream.drained()
      else data.drained?.()
    },
    close: (ws: WebSocket<WsSocket>) => {
      const data = ws.getUserData()
      data.closed = true
      if (data.stream) data.stream.closed()
      else data.conn?.lost()
    },
  }
  app.ws<WsSocket>('/$iothub/websocket', { ...handlers, upgrade: upgrade([MQTT_WS_PROTOCOL, AMQP_WS_PROTOCOL]) })
  app.ws<WsSocket>('/$servicebus/websocket', { ...handlers, upgrade: upgrade([AMQP_WS_PROTOCOL]) })
  return heldBudget
}
