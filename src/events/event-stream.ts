// The built-in endpoint as a WebSocket push stream: each text frame is a JSON array of events
// committed since the previous frame. A reader is never sent more than it can take: pushing stops
// while its socket holds more than HIGH_WATER bytes and resumes on drain from the first event it
// has not been sent. A send uWS did not take (past maxBackpressure) does not count as sent. All
// readers together send at most PUSH_TURN_BYTES, or for PUSH_TURN_MS, per event-loop turn: a fast
// reader catching up on a long backlog never fills its socket, and would otherwise hold the hub for
// seconds (64 of them, 64 times as long).
import type { TemplatedApp, WebSocket } from 'uWebSockets.js'
import type { Authenticator, PolicyToken } from '../auth/authenticator.js'
import type { HttpsFront } from '../tls/https-front.js'
import { errorBody, HubError } from '../rest/hub-error.js'
import { CLOCK_SKEW_SECONDS, parseSasToken } from '../auth/sas-token.js'
import { partitionOf } from '../shard-protocol.js'
import { toEventJson, type BuiltInEndpoint } from './built-in-endpoint.js'

/** Stop pushing to a reader whose socket holds this much. */
export const STREAM_HIGH_WATER = 1024 * 1024
/** A frame read from the store carries at most this many body bytes (at least one event). */
export const STREAM_FRAME_BODY_BYTES = 256 * 1024
/** Readers at once: each may hold STREAM_HIGH_WATER in its socket, and the kernel holds more. */
export const MAX_STREAM_READERS = 64
/** What one push may send, and how long it may run, before it lets the event loop serve the others. */
export const PUSH_TURN_BYTES = 4 * 1024 * 1024
const PUSH_TURN_MS = 10
/** Events read from the store per frame. */
const FRAME_EVENTS = 200
/**
 * uWS drops a send past this: it is far above HIGH_WATER plus the largest frame (one 256 KB event
 * in JSON and base64 is under 400 KB; shard frames are capped too), so a send that passes the
 * HIGH_WATER check is always taken. The result is checked all the same.
 */
const MAX_BACKPRESSURE = 16 * 1024 * 1024
/** uWS send results */
const DROPPED = 2

export interface Reader {
  /** partition → next sequence number to send */
  positions: Map<number, number>
  closed: boolean
  /** when the reader's token stops being valid (ms): the stream closes then, as an MQTT connection does */
  expiresAt: number
  /** the policy token it opened with: the stream closes when the policy no longer accepts it */
  held: PolicyToken
  expiryTimer?: NodeJS.Timeout
  /** round-robin start, so a partition with a long backlog cannot starve the others */
  turn: number
}

/** What a push needs of a reader's socket. */
export type StreamSocket = Pick<WebSocket<Reader>, 'getUserData' | 'getBufferedAmount' | 'send'>

export class EventStream {
  private readonly readers = new Set<WebSocket<Reader>>()
  private auth: Authenticator | undefined

  private readonly readersPerPartition = new Map<number, number>()
  /** readers waiting for the next turn's budget, in turn order */
  private readonly waiting = new Set<StreamSocket>()
  /** what pushes have spent of this event-loop turn */
  private spent = { open: false, since: 0, bytes: 0 }

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

  mount(app: TemplatedApp, auth: Authenticator, front: Pick<HttpsFront, 'peerOf'>): void {
    this.auth = auth
    app.ws<Reader>('/messages/events/stream', {
      maxPayloadLength: 16 * 1024,
      maxBackpressure: MAX_BACKPRESSURE,
      upgrade: (res, req, context) => {
        if (!front.peerOf(res.getProxiedRemoteAddress())) return void res.close() // came round the TLS front
        const query = new URLSearchParams(req.getQuery() ?? '')
        const key = req.getHeader('sec-websocket-key')
        const protocol = req.getHeader('sec-websocket-protocol')
        const extensions = req.getHeader('sec-websocket-extensions')
        let positions: Map<number, number>
        let expiresAt: number
        let held: PolicyToken
        try {
          const token = req.getHeader('authorization') || query.get('authorization') || undefined
          const policy = auth.authorizeService(token, 'ServiceConnect', true)
          held = { keyName: policy.keyName, token: token! }
          if (this.readers.size >= MAX_STREAM_READERS) throw new HubError(429001, `at most ${MAX_STREAM_READERS} stream readers at once`)
          expiresAt = (parseSasToken(token!).expiry + CLOCK_SKEW_SECONDS) * 1000
          this.endpoint.refresh()
          const group = query.get('consumerGroup') ?? '$Default'
          this.endpoint.checkConsumerGroup(group)
          const partitions = this.partitionsAsked(query)
          positions = new Map(partitions.map((p) => [p, this.endpoint.startPosition(p, group, {
            sequenceNumber: query.get('fromSequenceNumber'), enqueuedTime: query.get('fromEnqueuedTime'), position: query.get('from') ?? 'latest',
          })]))
        } catch (e) {
          const err = e instanceof HubError ? e : new HubError(500001, 'internal error')
          res.cork(() => res.writeStatus(`${err.status} Error`).writeHeader('iothub-errorcode', err.codeName)
            .writeHeader('Content-Type', 'application/json').end(errorBody(err)))
          return
        }
        res.upgrade<Reader>({ positions, closed: false, turn: 0, expiresAt, held }, key, protocol, extensions, context)
      },
      open: (ws) => {
        const reader = ws.getUserData()
        reader.expiryTimer = setTimeout(() => { if (!reader.closed) ws.end(1008, 'SAS token expired') }, Math.min(reader.expiresAt - Date.now(), 2 ** 31 - 1))
        reader.expiryTimer.unref()
        this.readers.add(ws)
        this.count(ws, 1)
        this.push(ws)
      },
      drain: (ws) => {
        this.endpoint.refresh()
        this.push(ws)
      },
      close: (ws) => {
        ws.getUserData().closed = true
        this.waiting.delete(ws)
        clearTimeout(ws.getUserData().expiryTimer)
        if (this.readers.delete(ws)) this.count(ws, -1)
      },
    })
  }

  /**
   * The partitions a reader asked for: `partitions=0,1`; `devicePartition=<deviceId>`, the one that
   * device's events land on (a page following one device reads only that); or all of them.
   */
  private partitionsAsked(query: URLSearchParams): number[] {
    const device = query.get('devicePartition')
    if (device !== null) {
      if (device === '') throw new HubError(400004, 'devicePartition needs a device id')
      if (query.has('partitions')) throw new HubError(400004, 'devicePartition and partitions cannot be combined: give one of them')
      return [partitionOf(device, this.endpoint.partitions)]
    }
    return query.get('partitions')?.split(',').map((p) => this.endpoint.checkPartition(p.trim()))
      ?? Array.from({ length: this.endpoint.partitions }, (_, p) => p)
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
      if (ws.getBufferedAmount() >= STREAM_HIGH_WATER) continue // drain resumes it from `next`
      if (frame !== null && next === first) {
        if (ws.send(frame, false) !== DROPPED) reader.positions.set(p, last + 1)
        continue
      }
      if (!refreshed) { this.endpoint.refresh(); refreshed = true }
      this.push(ws)
    }
  }

  /**
   * Sends from the store, one frame per partition in turn, until the socket is full, every partition
   * is caught up, or this event-loop turn's budget is used (then it goes on in a later turn).
   */
  push(ws: StreamSocket): void {
    const reader = ws.getUserData()
    if (this.waiting.has(ws)) return
    const partitions = [...reader.positions.keys()]
    let idle = 0
    while (!reader.closed && idle < partitions.length && ws.getBufferedAmount() < STREAM_HIGH_WATER) {
      if (!this.budgetLeft()) { this.waiting.add(ws); return }
      const p = partitions[reader.turn % partitions.length]!
      reader.turn++
      const frame = this.readFrame(p, reader.positions.get(p)!)
      if (!frame) { idle++; continue }
      idle = 0
      if (ws.send(frame.json, false) === DROPPED) return // not taken: resent from the same position on drain
      reader.positions.set(p, frame.next)
      this.spent.bytes += frame.json.length
    }
  }

  /**
   * One budget for all readers per event-loop turn, so that many readers catching up at once cost
   * the loop no more than one does. The first push of a turn opens it; readers that found it used
   * go on, in order, at the start of the next.
   */
  private budgetLeft(): boolean {
    if (!this.spent.open) {
      this.spent = { open: true, since: performance.now(), bytes: 0 }
      setImmediate(() => this.nextTurn())
    }
    return this.spent.bytes < PUSH_TURN_BYTES && performance.now() - this.spent.since < PUSH_TURN_MS
  }

  private nextTurn(): void {
    this.spent.open = false
    if (this.waiting.size === 0) return
    this.endpoint.refresh()
    // round robin: each reader goes to the back as it takes its turn
    for (const ws of [...this.waiting]) {
      this.waiting.delete(ws)
      if (ws.getUserData().closed) continue
      this.push(ws) // if the budget ran out it is back in the queue, behind those not reached yet
      if (!this.budgetLeft()) return
    }
  }

  /** The next frame of partition `p` from `from`: bounded by count and by bytes of bodies and properties, at least one event. */
  private readFrame(p: number, from: number): { json: string; next: number } | undefined {
    const stored = this.endpoint.readStored(p, from, FRAME_EVENTS, STREAM_FRAME_BODY_BYTES)
    if (stored.length === 0) return undefined
    return { json: JSON.stringify(stored.map((r) => toEventJson(p, r.sequence, r.offset, r.event))), next: stored[stored.length - 1]!.sequence + 1 }
  }

  /** Readers whose policy token was revoked (key regenerated, policy deleted, ServiceConnect taken away) close now. */
  policiesChanged(): void {
    for (const ws of [...this.readers]) {
      if (!this.auth!.stillHolds(ws.getUserData().held, 'ServiceConnect')) ws.end(1008, 'the shared access policy key that signed its token was revoked')
    }
  }

  closeAll(): void {
    for (const ws of this.readers) ws.end(1001, 'hub shutting down')
  }
}
