// AMQP over WebSocket (subprotocol AMQPWSB10): binary messages carry the AMQP byte stream, so a
// uWS WebSocket is made to look like the socket the frame guard and rhea expect. uWS cannot stop
// reading a WebSocket, so while the hub holds the connection what arrives is kept, up to
// `slackBytes`, and given to rhea when reading resumes; a peer that sends more than that while held
// (beyond the credit it was given) is closed.
import type { X509Certificate } from 'node:crypto'
import { EventEmitter } from 'node:events'
import type tls from 'node:tls'
import type { WebSocket } from 'uWebSockets.js'
import type { AmqpByteSocket } from './frame-guard.js'

/** uWS send results */
const DROPPED = 2

/** What all held WebSocket connections together may keep: each may hold its slack, but not all at once. */
export class HeldInputBudget {
  held = 0
  constructor(readonly maxBytes: number) {}
}

/** What the stream needs of a uWS WebSocket. */
export type AmqpWebSocket = Pick<WebSocket<unknown>, 'send' | 'getBufferedAmount' | 'end' | 'close'>

export class WebSocketByteStream extends EventEmitter implements AmqpByteSocket {
  private isPaused = false
  private held: Buffer[] = []
  private heldBytes = 0
  private flushScheduled = false
  private waitingForDrain: (() => void)[] = []
  destroyed = false
  writableEnded = false

  constructor(private readonly ws: AmqpWebSocket, readonly remoteAddress: string, private readonly slackBytes: number,
    private readonly hubWide: HeldInputBudget = new HeldInputBudget(Infinity),
    /** the client certificate chain the TLS front saw (X.509 devices over AmqpWs) */
    readonly peerCertificates: () => X509Certificate[] | undefined = () => undefined) {
    super()
  }

  get authorized(): boolean { return false }
  get remotePort(): number | undefined { return undefined }
  getPeerCertificate(): tls.PeerCertificate { return {} as tls.PeerCertificate }
  setNoDelay(): this { return this }

  get writableLength(): number {
    return this.destroyed ? 0 : this.ws.getBufferedAmount()
  }

  write(data: Buffer, flushed: () => void): boolean {
    if (this.destroyed || this.writableEnded) return false
    // a send uWS did not take would leave a hole in the AMQP byte stream: the connection ends
    if (this.ws.send(data, true) === DROPPED) {
      this.destroy()
      return false
    }
    if (this.ws.getBufferedAmount() === 0) queueMicrotask(flushed)
    else this.waitingForDrain.push(flushed)
    return this.ws.getBufferedAmount() === 0
  }

  end(): void {
    if (this.destroyed || this.writableEnded) return
    this.writableEnded = true
    this.ws.end(1000)
  }

  destroy(): void {
    if (this.destroyed) return
    this.destroyed = true
    this.dropHeld()
    try { this.ws.close() } catch { /* already closed */ }
  }

  pause(): void { this.isPaused = true }

  /**
   * What was held is given on a later turn, never from inside resume(): rhea resumes while it is
   * still handling the frames of a chunk, and bytes fed to it then would be read before the rest of
   * that chunk (a disposition before the begin of its session).
   */
  resume(): void {
    this.isPaused = false
    if (this.held.length > 0) this.flushLater()
  }

  private flushLater(): void {
    if (this.flushScheduled) return
    this.flushScheduled = true
    setImmediate(() => {
      this.flushScheduled = false
      while (!this.isPaused && this.held.length > 0 && !this.destroyed) {
        const chunk = this.held.shift()!
        this.heldBytes -= chunk.length
        this.hubWide.held -= chunk.length
        this.emit('data', chunk)
      }
    })
  }

  // --- from the uWS handlers ---

  /** A binary message (the caller copied it out of uWS's buffer). */
  received(chunk: Buffer): void {
    if (this.destroyed) return
    if (!this.isPaused && this.held.length === 0) {
      this.emit('data', chunk)
      return
    }
    // held chunks go first: this one waits behind them
    if (!this.isPaused) this.flushLater()
    if (this.heldBytes + chunk.length > this.slackBytes || this.hubWide.held + chunk.length > this.hubWide.maxBytes) {
      const whose = this.heldBytes + chunk.length > this.slackBytes ? `more than ${this.slackBytes} bytes` : `more than the ${this.hubWide.maxBytes} bytes all held WebSockets may keep`
      this.dropHeld()
      this.emit('error', new Error(`${whose} sent while the hub was holding the connection`))
      this.destroy()
      return
    }
    this.heldBytes += chunk.length
    this.hubWide.held += chunk.length
    this.held.push(chunk)
  }

  drained(): void {
    if (!this.destroyed && this.ws.getBufferedAmount() > 0) return
    const waiting = this.waitingForDrain
    this.waitingForDrain = []
    for (const flushed of waiting) flushed()
  }

  private dropHeld(): void {
    this.hubWide.held -= this.heldBytes
    this.held = []
    this.heldBytes = 0
  }

  closed(): void {
    this.destroyed = true
    this.dropHeld()
    this.drained()
    this.emit('close')
  }
}
