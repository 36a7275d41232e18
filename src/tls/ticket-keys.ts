// The session ticket keys a TLS server encrypts and decrypts tickets with: the newest one issues,
// every one kept still opens the tickets it issued. In memory only (ticket-key-store.ts keeps them on
// disk and rotates them); a snapshot is plain data, so a worker thread can be handed the same keys.
import { randomBytes } from 'node:crypto'

/** The layout Node's `ticketKeys` takes: 16 bytes of key name, 16 of HMAC key, 16 of AES key. */
export const TICKET_KEY_BYTES = 48

export interface TicketKey {
  /** sent in the clear inside each ticket, to find the key again */
  readonly name: Buffer
  readonly hmac: Buffer
  readonly aes: Buffer
  /** when it became the issuing key (ms since the epoch) */
  readonly createdAt: number
}

export interface TicketKeysSnapshot { keys: { bytes: Uint8Array; createdAt: number }[] }

export function newTicketKey(createdAt: number): TicketKey {
  return ticketKeyFrom(randomBytes(TICKET_KEY_BYTES), createdAt)
}

export function ticketKeyFrom(bytes: Uint8Array, createdAt: number): TicketKey {
  if (bytes.length !== TICKET_KEY_BYTES) throw new Error(`a ticket key is ${TICKET_KEY_BYTES} bytes`)
  // copies: the caller's buffer may be reused or transferred
  const b = Buffer.from(bytes)
  return { name: b.subarray(0, 16), hmac: b.subarray(16, 32), aes: b.subarray(32, 48), createdAt }
}

/** The 48 bytes Node's `ticketKeys` / `setTicketKeys` take. */
export function ticketKeyBytes(k: TicketKey): Buffer {
  return Buffer.concat([k.name, k.hmac, k.aes])
}

export class TicketKeyRing {
  private list: readonly TicketKey[]
  private readonly listeners = new Set<() => void>()

  /** `keys` newest first; at least one. */
  constructor(keys: readonly TicketKey[]) {
    this.list = TicketKeyRing.checked(keys)
  }

  static fromSnapshot(s: TicketKeysSnapshot): TicketKeyRing {
    return new TicketKeyRing(s.keys.map((k) => ticketKeyFrom(k.bytes, k.createdAt)))
  }

  /** the key new tickets are encrypted with */
  get current(): TicketKey { return this.list[0]! }

  get keys(): readonly TicketKey[] { return this.list }

  /** The kept key named `name`, and whether it is the current one. */
  find(name: Uint8Array): { key: TicketKey; current: boolean } | undefined {
    for (let i = 0; i < this.list.length; i++) {
      const k = this.list[i]!
      if (k.name.equals(name)) return { key: k, current: i === 0 }
    }
    return undefined
  }

  replace(keys: readonly TicketKey[]): void {
    this.list = TicketKeyRing.checked(keys)
    for (const l of this.listeners) l()
  }

  /** Told after every replace (a rotation); returns the unsubscribe. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  snapshot(): TicketKeysSnapshot {
    return { keys: this.list.map((k) => ({ bytes: new Uint8Array(ticketKeyBytes(k)), createdAt: k.createdAt })) }
  }

  private static checked(keys: readonly TicketKey[]): readonly TicketKey[] {
    if (keys.length === 0) throw new Error('a ticket key ring needs a key')
    return [...keys]
  }
}
