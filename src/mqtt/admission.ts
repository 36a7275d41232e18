// Who may hold a connection that has not authenticated yet: a source address gets a bounded number
// of them (TLS handshakes in progress and connections waiting for their CONNECT), so one host
// cannot take every socket the hub has. Authenticated connections are not counted: load tests
// connect many devices from one address.
import type net from 'node:net'

export const MAX_PENDING_PER_ADDRESS = 1000

export class Admission {
  private readonly pending = new Map<string, number>()
  /** `address|port` of a raw socket → its release, found again when the same peer authenticates */
  private readonly tickets = new Map<string, () => void>()
  refused = 0

  constructor(private readonly maxPendingPerAddress = MAX_PENDING_PER_ADDRESS) {}

  /** Counts one pending connection of `address`; undefined when the address already has too many. */
  enter(address: string): (() => void) | undefined {
    const n = this.pending.get(address) ?? 0
    if (n >= this.maxPendingPerAddress) {
      this.refused++
      return undefined
    }
    this.pending.set(address, n + 1)
    let released = false
    return () => {
      if (released) return
      released = true
      const left = (this.pending.get(address) ?? 1) - 1
      if (left <= 0) this.pending.delete(address)
      else this.pending.set(address, left)
    }
  }

  /** A raw TCP socket as it is accepted (before TLS): destroyed when its address is over the bound. */
  admitRaw(raw: net.Socket): void {
    const address = raw.remoteAddress ?? ''
    const release = this.enter(address)
    if (!release) { raw.destroy(); return }
    const key = `${address}|${raw.remotePort}`
    const done = () => { this.tickets.delete(key); release() }
    this.tickets.set(key, done)
    raw.once('close', done)
  }

  /** The ticket of the raw socket that carries this peer's connection, if one was admitted. */
  ticketOf(address: string, port: number | undefined): (() => void) | undefined {
    return this.tickets.get(`${address}|${port}`)
  }

  pendingOf(address: string): number {
    return this.pending.get(address) ?? 0
  }
}
