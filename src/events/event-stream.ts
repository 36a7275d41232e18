// The built-in endpoint as a WebSocket push stream: each text frame is a JSON array of events
// committed since the previous frame. A slow reader is not buffered without bound: pushing stops
// while its socket holds more than HIGH_WATER bytes and resumes on drain, from where it stopped.
import type { TemplatedApp, WebSocket } from 'uWebSockets.js'
import type { Authenticator } from '../auth/authenticator.js'
import { errorBody, HubError } from '../rest/hub-error.js'
import type { BuiltInEndpoint } from './built-in-endpoint.js'

const HIGH_WATER = 4 * 1024 * 1024
const BATCH = 500

interface Reader {
  /** partition → next sequence number to send */
  positions: Map<number, number>
  closed: boolean
}

export class EventStream {
  private readonly readers = new Set<WebSocket<Reader>>()

  constructor(private readonly endpoint: BuiltInEndpoint) {}

  mount(app: TemplatedApp, auth: Authenticator): void {
    app.ws<Reader>('/messages/events/stream', {
      maxPayloadLength: 16 * 1024,
      upgrade: (res, req, context) => {
        const query = new URLSearchParams(req.getQuery() ?? '')
        const key = req.getHeader('sec-websocket-key')
        const protocol = req.getHeader('sec-websocket-protocol')
        const extensions = req.getHeader('sec-websocket-extensions')
        let positions: Map<number, number>
        try {
          auth.authorizeService(req.getHeader('authorization') || query.get('authorization') || undefined, 'ServiceConnect')
          this.endpoint.refresh()
          const group = query.get('consumerGroup') ?? '$Default'
          this.endpoint.checkConsumerGroup(group)
          const partitions = query.get('partitions')?.split(',').map((p) => this.endpoint.checkPartition(p.trim()))
            ?? Array.from({ length: this.endpoint.partitions }, (_, p) => p)
          positions = new Map(partitions.map((p) => [p, this.endpoint.startPosition(p, group, {
            sequenceNumber: query.get('fromSequenceNumber'), enqueuedTime: query.get('fromEnqueuedTime'), position: query.get('from') ?? 'latest',
          })]))
        } catch (e) {
          const err = e instanceof HubError ? e : new HubError(500001, 'internal error')
          res.cork(() => res.writeStatus(`${err.status} Error`).writeHeader('iothub-errorcode', err.codeName)
            .writeHeader('Content-Type', 'application/json').end(errorBody(err)))
          return
        }
        res.upgrade<Reader>({ positions, closed: false }, key, protocol, extensions, context)
      },
      open: (ws) => {
        this.readers.add(ws)
        this.push(ws)
      },
      drain: (ws) => this.push(ws),
      close: (ws) => {
        ws.getUserData().closed = true
        this.readers.delete(ws)
      },
    })
  }

  /** A shard committed up to `last` on partition `p`. */
  advanced(p: number): void {
    if (this.readers.size === 0) return
    this.endpoint.refresh()
    for (const ws of this.readers) if (ws.getUserData().positions.has(p)) this.push(ws)
  }

  private push(ws: WebSocket<Reader>): void {
    const reader = ws.getUserData()
    for (const [p, next] of reader.positions) {
      let from = next
      while (!reader.closed && ws.getBufferedAmount() < HIGH_WATER) {
        const events = this.endpoint.read(p, from, BATCH)
        if (events.length === 0) break
        from = events[events.length - 1]!.sequenceNumber + 1
        ws.send(JSON.stringify(events), false)
      }
      reader.positions.set(p, from)
    }
  }

  closeAll(): void {
    for (const ws of this.readers) ws.end(1001, 'hub shutting down')
  }
}
