// Who may hold a socket on a TLS listener before proving who they are: a deadline from the TCP
// accept to the end of the TLS handshake, and per source address bounds on connections that have not
// authenticated yet and on all connections. It knows nothing of the protocol spoken inside.
import type net from 'node:net'
import tls from 'node:tls'

export type GateRefusal = 'handshake-timeout' | 'handshake-failed' | 'too-many-unauthenticated' | 'too-many-connections'

export interface ConnectionGateOptions {
  handshakeTimeoutMs: number
  maxUnauthenticatedPerAddress: number
  maxConnectionsPerAddress: number
  /** told of every socket the gate drops, for logs */
  onRefused?(address: string, reason: GateRefusal): void
}

interface AddressCounts { unauthenticated: number; total: number }

/** One admitted connection's place in its source address's counts. */
export class GateTicket {
  private isAuthenticated = false
  private isReleased = false

  constructor(readonly address: string, private readonly counts: AddressCounts, private readonly forget: () => void) {}

  /** The peer proved who it is: it no longer counts against the address's unauthenticated bound. */
  authenticated(): void {
    if (this.isAuthenticated || this.isReleased) return
    this.isAuthenticated = true
    this.counts.unauthenticated--
  }

  /** The socket closed. */
  release(): void {
    if (this.isReleased) return
    this.isReleased = true
    if (!this.isAuthenticated) this.counts.unauthenticated--
    this.counts.total--
    if (this.counts.total === 0) this.forget()
  }
}

interface Handshaking { ticket: GateTicket; raw: net.Socket; timer: NodeJS.Timeout }

/** `::ffff:10.0.0.1` and `10.0.0.1` are one peer. */
function sourceAddress(socket: net.Socket): string | undefined {
  const a = socket.remoteAddress
  return a?.startsWith('::ffff:') ? a.slice(7) : a
}

/** A TCP connection as both ends of a TLS socket see it (the TLS socket shares the raw one's fd). */
function socketKey(socket: net.Socket): string {
  return `${socket.remoteAddress}|${socket.remotePort}`
}

export class ConnectionGate {
  private readonly byAddress = new Map<string, AddressCounts>()
  private readonly handshaking = new Map<string, Handshaking>()

  constructor(private readonly o: ConnectionGateOptions) {}

  /** A TLS server whose sockets pass the gate; `onSecure` gets each one that finished its handshake in time. */
  createServer(options: tls.TlsOptions, onSecure: (socket: tls.TLSSocket, ticket: GateTicket) => void): tls.Server {
    const server = tls.createServer({ minVersion: 'TLSv1.2', ...options })
    server.on('connection', (raw: net.Socket) => this.admit(raw))
    server.on('secureConnection', (socket: tls.TLSSocket) => {
      const pending = this.handshaking.get(socketKey(socket))
      if (!pending) return void socket.destroy() // its deadline passed as the handshake finished
      this.handshaking.delete(socketKey(socket))
      clearTimeout(pending.timer)
      onSecure(socket, pending.ticket)
    })
    // Node only reports a failed or timed-out handshake here: without a destroy the socket stays open
    server.on('tlsClientError', (_e, socket) => {
      const address = sourceAddress(socket)
      socket.destroy()
      if (address) this.o.onRefused?.(address, 'handshake-failed')
    })
    return server
  }

  /** Connections from `address` counted now (for tests and diagnostics). */
  countsOf(address: string): Readonly<AddressCounts> {
    return this.byAddress.get(address) ?? { unauthenticated: 0, total: 0 }
  }

  /** Drops every socket still handshaking (shutdown). */
  destroyHandshaking(): void {
    for (const h of this.handshaking.values()) h.raw.destroy()
  }

  /**
   * A connection secured elsewhere (a WebSocket upgraded by the HTTPS server) counts against its
   * address like the others; undefined when the address is over a bound. Release the ticket when it closes.
   */
  enter(address: string): GateTicket | undefined {
    const unmapped = address.startsWith('::ffff:') ? address.slice(7) : address
    const ticket = this.ticketFor(unmapped)
    if (typeof ticket === 'string') {
      this.o.onRefused?.(unmapped, ticket)
      return undefined
    }
    return ticket
  }

  private ticketFor(address: string): GateTicket | GateRefusal {
    let counts = this.byAddress.get(address)
    if (counts && counts.total >= this.o.maxConnectionsPerAddress) return 'too-many-connections'
    if (counts && counts.unauthenticated >= this.o.maxUnauthenticatedPerAddress) return 'too-many-unauthenticated'
    if (!counts) this.byAddress.set(address, (counts = { unauthenticated: 0, total: 0 }))
    counts.unauthenticated++
    counts.total++
    return new GateTicket(address, counts, () => this.byAddress.delete(address))
  }

  private admit(raw: net.Socket): void {
    const address = sourceAddress(raw)
    if (!address) return void raw.destroy() // already gone
    const ticket = this.ticketFor(address)
    if (typeof ticket === 'string') return this.refuse(raw, address, ticket)
    const key = socketKey(raw)
    // an absolute deadline: Node's own handshakeTimeout restarts on every byte, so a slow ClientHello would hold it
    const timer = setTimeout(() => {
      this.handshaking.delete(key)
      raw.destroy()
      ticket.release() // now, not when 'close' comes round
      this.o.onRefused?.(address, 'handshake-timeout')
    }, this.o.handshakeTimeoutMs)
    timer.unref()
    this.handshaking.set(key, { ticket, raw, timer })
    raw.on('error', () => {}) // 'close' follows
    // the raw socket closes with the TLS socket that wraps it, whichever side ends it
    raw.once('close', () => {
      const pending = this.handshaking.get(key)
      if (pending?.raw === raw) {
        clearTimeout(pending.timer)
        this.handshaking.delete(key)
      }
      ticket.release()
    })
  }

  private refuse(raw: net.Socket, address: string, reason: GateRefusal): void {
    raw.on('error', () => {})
    raw.destroy()
    this.o.onRefused?.(address, reason)
  }
}
