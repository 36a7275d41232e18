// Stands between a TLS socket and rhea, which trusts the size a frame header claims and buffers until
// that many bytes arrived. The guard reads AMQP framing as bytes pass (an 8-byte protocol header, a
// second one after SASL, then frames that start with their 4-byte size), refuses a frame larger than
// the advertised max-frame-size before any of it is held, and bounds what a peer may send before it
// authenticates. It looks at sizes only: decoding stays rhea's. rhea sees it as its socket.
import { EventEmitter } from 'node:events'
import type tls from 'node:tls'

/**
 * What the guard needs of the byte pipe under a connection: a TLS socket, or a WebSocket carrying
 * AMQP (websocket-stream.ts). It emits 'data' (Buffer), 'error' and 'close'.
 */
export interface AmqpByteSocket extends EventEmitter {
  readonly authorized: boolean
  readonly remoteAddress: string | undefined
  readonly remotePort: number | undefined
  readonly destroyed: boolean
  readonly writableEnded: boolean
  /** bytes written and not yet taken by the network */
  readonly writableLength: number
  getPeerCertificate(): tls.PeerCertificate
  setNoDelay(noDelay?: boolean): unknown
  /** `flushed` runs once the bytes left (or the socket closed) */
  write(data: Buffer, flushed: () => void): boolean
  end(): unknown
  destroy(): unknown
  pause(): unknown
  resume(): unknown
}

const PROTOCOL_HEADER_BYTES = 8
const FRAME_SIZE_BYTES = 4
/** the smallest frame: its 8-byte header alone (an empty frame is a heartbeat) */
const MIN_FRAME_BYTES = 8
/** "AMQP", the start of every protocol header */
const AMQP_MAGIC = 0x414d5150
const SASL_PROTOCOL_ID = 3

export type PauseReason = 'output' | 'devices'

export type FrameViolation = 'frame-too-large' | 'frame-too-small' | 'bad-protocol-header' | 'unauthenticated-input-over-bound'

export interface FrameGuardOptions {
  maxFrameBytes: number
  maxUnauthenticatedBytes: number
  closeGraceMs: number
  /** a peer broke a bound; nothing from it reaches rhea any more. The owner closes the connection. */
  onViolation(violation: FrameViolation): void
  /** runs rhea's handling of one chunk (the owner captures what rhea prints while it reads) */
  runRhea?(read: () => void): void
}

type Expecting = 'protocol-header' | 'frame-size' | 'frame-body'

export class AmqpFrameGuard extends EventEmitter {
  private expecting: Expecting = 'protocol-header'
  /** the protocol header or frame size read so far (they can straddle chunks) */
  private readonly head = Buffer.alloc(PROTOCOL_HEADER_BYTES)
  private headLength = 0
  private bodyRemaining = 0
  private headersSeen = 0
  private lastProtocolId = -1
  private unauthenticatedBytes = 0
  private isAuthenticated = false
  private readonly pausedFor = new Set<PauseReason>()
  private isDiscarding = false
  private hasReportedEnd = false
  private closeTimer: NodeJS.Timeout | undefined
  /** bytes received in all (diagnostics) */
  receivedBytes = 0

  constructor(readonly socket: AmqpByteSocket, private readonly o: FrameGuardOptions) {
    super()
    socket.on('data', (chunk: Buffer) => this.input(chunk))
    socket.on('error', () => {}) // 'close' follows and reports the end to rhea
    socket.on('close', () => {
      clearTimeout(this.closeTimer)
      this.reportEnd()
    })
  }

  // --- what rhea uses of a socket ---

  get encrypted(): boolean { return true }
  get authorized(): boolean { return this.socket.authorized }
  get remoteAddress(): string | undefined { return this.socket.remoteAddress }
  get remotePort(): number | undefined { return this.socket.remotePort }
  getPeerCertificate(): tls.PeerCertificate { return this.socket.getPeerCertificate() }
  get_id_string(): string { return `${this.socket.remoteAddress}:${this.socket.remotePort}` }
  setNoDelay(noDelay?: boolean): this { this.socket.setNoDelay(noDelay); return this }

  /** rhea's output; 'written' when it is queued, 'flushed' when the kernel took it (the budget listens). */
  write(data: Buffer): boolean {
    if (this.socket.destroyed || this.socket.writableEnded) return false
    const ok = this.socket.write(data, this.onFlushed)
    this.emit('written')
    return ok
  }

  private readonly onFlushed = () => { this.emit('flushed') }

  /** rhea ends the socket after a close or an error: a peer that never reads must not hold it open. */
  end(): void {
    if (this.socket.destroyed) return
    this.socket.end()
    this.closeTimer ??= setTimeout(() => this.socket.destroy(), this.o.closeGraceMs).unref()
  }

  destroy(): void {
    this.socket.destroy()
  }

  // --- what the hub uses ---

  /** The peer put a valid token: the unauthenticated bound no longer applies. */
  authenticated(): void {
    this.isAuthenticated = true
  }

  /** Bytes queued in the socket, not yet taken by the kernel. */
  get writableLength(): number {
    return this.socket.writableLength
  }

  /** Reading stops while any reason holds it (the output budget, a device's telemetry window). */
  pauseInput(reason: PauseReason = 'output'): void {
    const wasReading = this.pausedFor.size === 0
    this.pausedFor.add(reason)
    if (wasReading) this.socket.pause()
  }

  resumeInput(reason: PauseReason = 'output'): void {
    if (!this.pausedFor.delete(reason) || this.pausedFor.size > 0 || this.isDiscarding) return
    this.socket.resume()
  }

  /** Whether the hub has stopped reading this connection. */
  get isInputPaused(): boolean { return this.pausedFor.size > 0 }

  /** Stops passing input to rhea; the socket is destroyed after the grace period unless it closes first. */
  discardInput(): void {
    this.isDiscarding = true
    this.closeTimer ??= setTimeout(() => this.socket.destroy(), this.o.closeGraceMs).unref()
  }

  // --- input ---

  private input(chunk: Buffer): void {
    if (this.isDiscarding) return
    this.receivedBytes += chunk.length
    if (!this.isAuthenticated) {
      this.unauthenticatedBytes += chunk.length
      if (this.unauthenticatedBytes > this.o.maxUnauthenticatedBytes) return this.violate('unauthenticated-input-over-bound')
    }
    const bad = this.scan(chunk)
    if (bad && bad.offset > 0) this.forward(chunk.subarray(0, bad.offset))
    if (bad) return this.violate(bad.violation)
    this.forward(chunk)
  }

  /** Advances the framing state over `chunk`; returns where the first bad frame starts, if any. */
  private scan(chunk: Buffer): { offset: number; violation: FrameViolation } | undefined {
    let i = 0
    while (i < chunk.length) {
      if (this.expecting === 'frame-body') {
        const n = Math.min(this.bodyRemaining, chunk.length - i)
        this.bodyRemaining -= n
        i += n
        if (this.bodyRemaining === 0) this.expecting = 'frame-size'
        continue
      }
      const startOffset = Math.max(0, i - this.headLength)
      const want = this.expecting === 'protocol-header' ? PROTOCOL_HEADER_BYTES : FRAME_SIZE_BYTES
      const n = Math.min(want - this.headLength, chunk.length - i)
      chunk.copy(this.head, this.headLength, i, i + n)
      this.headLength += n
      i += n
      if (this.headLength < want) break
      const violation = this.expecting === 'protocol-header' ? this.takeProtocolHeader() : this.takeFrameSize()
      if (violation) return { offset: startOffset, violation }
    }
    return undefined
  }

  private takeProtocolHeader(): FrameViolation | undefined {
    if (this.head.readUInt32BE(0) !== AMQP_MAGIC) return 'bad-protocol-header'
    this.lastProtocolId = this.head[4]!
    this.headersSeen++
    this.headLength = 0
    this.expecting = 'frame-size'
    return undefined
  }

  private takeFrameSize(): FrameViolation | undefined {
    const size = this.head.readUInt32BE(0)
    // after the SASL exchange the peer starts over with the AMQP protocol header ("AMQP" is never a frame
    // size: 0x414d5150 is far above any max-frame-size)
    if (size === AMQP_MAGIC && this.headersSeen === 1 && this.lastProtocolId === SASL_PROTOCOL_ID) {
      this.expecting = 'protocol-header'
      return undefined
    }
    if (size > this.o.maxFrameBytes) return 'frame-too-large'
    if (size < MIN_FRAME_BYTES) return 'frame-too-small'
    this.headLength = 0
    this.bodyRemaining = size - FRAME_SIZE_BYTES
    this.expecting = 'frame-body'
    return undefined
  }

  private forward(chunk: Buffer): void {
    const read = () => { this.emit('data', chunk) }
    if (this.o.runRhea) this.o.runRhea(read)
    else read()
  }

  private violate(violation: FrameViolation): void {
    this.discardInput()
    this.o.onViolation(violation)
  }

  /** rhea learns of a closed socket through 'end' (it does not listen for 'close'). */
  private reportEnd(): void {
    if (this.hasReportedEnd) return
    this.hasReportedEnd = true
    this.emit('end')
  }
}
