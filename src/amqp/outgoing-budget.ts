// How much the hub holds for one AMQP connection on its way out, so that producers (partition
// receivers, the feedback link) stop for a peer that does not read and resume when it does. It
// counts the socket's queue plus messages handed to rhea that rhea has not written yet (rhea holds
// them while the peer's session window is shut). A peer whose socket stays backed up is dropped, and
// while the socket alone is over the bound the peer is not read, so replies rhea writes on its own
// (dispositions, $cbs and $management answers) cannot pile up either.
import type rhea from 'rhea'
import type { AmqpFrameGuard } from './frame-guard.js'

/** What a producer sees of a connection's output. */
export interface OutgoingRoom {
  /** whether the connection may take another message now */
  hasRoom(): boolean
  /** `resume` runs once, when the connection has room again (not at all if it closes first) */
  whenRoom(resume: () => void): void
  /** the producer handed `bytes` to rhea as `delivery` */
  queued(delivery: rhea.Delivery, bytes: number): void
}

/** rhea's session internals the ledger reads: deliveries leave in id order per session. */
interface RheaSession {
  local: { channel: number }
  connection: { local_channel_map: Record<string, unknown> }
  outgoing: { next_pending_delivery: number }
}

/** Messages queued on one session, oldest first, not yet written. */
class SessionLedger {
  private readonly ids: number[] = []
  private readonly sizes: number[] = []
  private head = 0
  heldBytes = 0

  constructor(readonly session: RheaSession) {}

  add(id: number, bytes: number): void {
    this.ids.push(id)
    this.sizes.push(bytes)
    this.heldBytes += bytes
  }

  /** Forgets what rhea has written since (every delivery below its next pending one). */
  settle(): void {
    const next = this.session.outgoing.next_pending_delivery
    while (this.head < this.ids.length && this.ids[this.head]! < next) this.heldBytes -= this.sizes[this.head++]!
    if (this.head > 1024 && this.head * 2 > this.ids.length) {
      this.ids.splice(0, this.head)
      this.sizes.splice(0, this.head)
      this.head = 0
    }
  }

  get isSessionGone(): boolean {
    const s = this.session
    return s.connection.local_channel_map[s.local.channel] !== s
  }
}

export interface OutgoingBudgetOptions {
  maxOutgoingBufferedBytes: number
  outgoingStallTimeoutMs: number
  /** the connection stayed above the bound, its socket backed up, for outgoingStallTimeoutMs */
  onStalled(): void
  /** a producer's resume callback threw */
  onError(e: unknown): void
  /** producers had to stop while the socket was backed up (the peer reads slower than we write) */
  onBackedUp?(heldBytes: number): void
}

export class OutgoingBudget implements OutgoingRoom {
  private readonly ledgers = new Map<RheaSession, SessionLedger>()
  private waiters: (() => void)[] = []
  private stallTimer: NodeJS.Timeout | undefined
  private isInputPaused = false
  private isCheckScheduled = false
  private isDisposed = false
  /** the most this connection ever held (diagnostics and tests) */
  peakBytes = 0

  constructor(private readonly guard: AmqpFrameGuard, private readonly o: OutgoingBudgetOptions) {
    // rhea wrote (the bytes moved from its queue to the socket's), or the kernel took some: look again
    guard.on('written', () => this.scheduleCheck())
    guard.on('flushed', () => this.scheduleCheck())
  }

  /** Bytes held for the peer now. */
  heldBytes(): number {
    let held = this.guard.writableLength
    for (const [session, ledger] of this.ledgers) {
      if (ledger.isSessionGone) { this.ledgers.delete(session); continue }
      ledger.settle()
      held += ledger.heldBytes
    }
    return held
  }

  hasRoom(): boolean {
    return !this.isDisposed && this.heldBytes() < this.o.maxOutgoingBufferedBytes
  }

  whenRoom(resume: () => void): void {
    if (this.isDisposed) return
    this.waiters.push(resume)
    this.scheduleCheck()
  }

  queued(delivery: rhea.Delivery, bytes: number): void {
    const d = delivery as unknown as { id: number; link: { session: RheaSession } }
    const session = d.link.session
    let ledger = this.ledgers.get(session)
    if (!ledger) this.ledgers.set(session, (ledger = new SessionLedger(session)))
    ledger.add(d.id, bytes)
    this.measure()
  }

  dispose(): void {
    this.isDisposed = true
    this.waiters = []
    this.ledgers.clear()
    clearTimeout(this.stallTimer)
  }

  /**
   * After the current turn: rhea writes what it was given on the next tick (and while it writes a
   * delivery, its bytes are in the socket and still in the ledger), and a producer resumed from inside
   * rhea's write loop would re-enter it.
   */
  private scheduleCheck(): void {
    if (this.isCheckScheduled || this.isDisposed) return
    this.isCheckScheduled = true
    setImmediate(() => {
      this.isCheckScheduled = false
      this.measure()
      this.checkRoom()
    })
  }

  /** Tracks the peak; above the bound, starts the stall clock while the socket is backed up and stops reading the peer. */
  private measure(): void {
    const held = this.heldBytes()
    if (held > this.peakBytes) this.peakBytes = held
    if (this.isDisposed || held < this.o.maxOutgoingBufferedBytes) return
    // bytes rhea holds for a shut session window are bounded already; only a peer that does not read its socket stalls
    if (this.guard.writableLength > 0 && !this.stallTimer) {
      this.o.onBackedUp?.(held)
      this.stallTimer = setTimeout(() => this.stallDeadline(), this.o.outgoingStallTimeoutMs).unref()
    }
    if (!this.isInputPaused && this.guard.writableLength >= this.o.maxOutgoingBufferedBytes) {
      this.isInputPaused = true
      this.guard.pauseInput()
    }
  }

  private stallDeadline(): void {
    this.stallTimer = undefined
    if (this.isDisposed) return
    if (this.hasRoom()) return this.checkRoom()
    if (this.guard.writableLength > 0) this.o.onStalled()
  }

  private checkRoom(): void {
    if (this.isDisposed) return
    if (this.isInputPaused && this.guard.writableLength < this.o.maxOutgoingBufferedBytes / 2) {
      this.isInputPaused = false
      this.guard.resumeInput()
    }
    if (!this.hasRoom()) return
    clearTimeout(this.stallTimer)
    this.stallTimer = undefined
    const waiting = this.waiters
    this.waiters = []
    for (const resume of waiting) {
      try {
        resume()
      } catch (e) {
        this.o.onError(e)
      }
    }
  }
}
