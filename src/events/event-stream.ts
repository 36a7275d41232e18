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

  private readonly readersPerPartition = new Map<number, number>()

  /** `tail(p, on)` asks the owning shard to send each commit of p as a ready frame while anyone reads live. */
  constructor(private readonly endpoint: BuiltInEndpoint, private readonly tail: (partition: number, on: boolean) => void) {}

  private count(ws: WebSocket<Reader>, delta: 1 | -1): void {
    for (const p of ws.getUserData().positions.keys()) {
      const n = (this.readersPerPartition.get(p) ?? 0) + delta
      this.readersPerPartition.set(p, n)
      if (n === 1 && delta === 1) this.tail(p, true)
      if (n === 0) this.tail(p, false)
    }
  }

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
        this.count(ws, 1)
        this.push(ws)
      },
      drain: (ws) => this.push(ws),
      close: (ws) => {
        ws.getUserData().closed = true
        if (this.readers.delete(ws)) this.count(ws, -1)
      },
    })
  }

  /**
   * A shard committed events first..last on partition `p`. Readers that were caught up get the
   * shard's ready frame as is; the others read on from the store.
   */
  advanced(p: number, first: number, last: number, frame: Uint8Array | null): void {
    if (this.readers.size === 0) return
    let refreshed = false
    for (const ws of this.readers) {
      const reader = ws.getUserData()
      const next = reader.positions.get(p)
      if (next === undefined || reader.closed) continue
      if (frame !== null && next === first && ws.getBufferedAmount() < HIGH_WATER) {
        ws.send(frame, false)
        reader.positions.set(p, last + 1)
        continue
      }
      if (!refreshed) { this.endpoint.refresh(); refreshed = true }
      this.push(ws)
    }
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
