// TLS session resumption for the hub's listeners, so that a reconnecting device skips the full
// handshake (its ECDHE and the server's ECDSA signature, ~1.3 ms of hub CPU each): tickets for
// TLS 1.3 and 1.2 whose keys are kept in the data directory and rotated (ticket-key-store.ts,
// ticket-key-callback.ts), session ids for TLS 1.2 clients without tickets (session-cache.ts), and
// the listeners' suite order (cipher-policy.ts).
//
// Use: one SessionResumption per hub (its file is shared by every listener); per listener, merge
// `serverOptions(name)` into the tls.createServer options and call `attach(server)`. A worker thread
// that runs its own servers gets `share()` from the owner, builds a SharedResumption from it, and is
// handed each rotation's keys (`update`).
import { join } from 'node:path'
import type tls from 'node:tls'
import { cipherOptions } from './cipher-policy.js'
import { attachSessionCache, SessionCache, type SessionCacheOptions } from './session-cache.js'
import { attachTicketKeys, type TicketKeyMode } from './ticket-key-callback.js'
import { TICKET_LIFETIME_MS, TicketKeyStore, type TicketKeyStoreOptions } from './ticket-key-store.js'
import { ticketKeyBytes, TicketKeyRing, type TicketKeysSnapshot } from './ticket-keys.js'

/** the key file, beside the hub's certificates in `<dataDir>/tls` */
export const TICKET_KEY_FILE = 'ticket-keys'

export interface SessionResumptionOptions extends TicketKeyStoreOptions {
  cache?: SessionCacheOptions
  /** false: no session-id cache (tickets only) */
  sessionIds?: boolean
}

/**
 * The options a listener named `listener` merges into tls.createServer's: the suite order, how long
 * a session resumes, and a session id context of its own. The context must not be Node's default (a
 * hash of process.argv, which changes with the command line and so across a restart) and differs per
 * listener, so that a session from one port does not resume on another. Merge `secureOptions` with
 * `|` if the listener sets any.
 */
export function tlsSessionOptions(listener: string, lifetimeMs = TICKET_LIFETIME_MS): tls.TlsOptions {
  const sessionIdContext = `hyperhub:${listener}`
  if (sessionIdContext.length > 32) throw new Error('a session id context is at most 32 bytes')
  return { ...cipherOptions(), sessionIdContext, sessionTimeout: Math.floor(lifetimeMs / 1000) }
}

/** What a listener needs of resumption: the options to create it with, and the keys and cache put on it. */
export interface ListenerResumption {
  serverOptions(listener: string): tls.TlsOptions
  attach(server: tls.Server): TicketKeyMode
}

function serverOptionsWith(ring: TicketKeyRing, lifetimeMs: number, listener: string): tls.TlsOptions {
  // ticketKeys as well: a server that is never attached still issues tickets a restart can open
  return { ...tlsSessionOptions(listener, lifetimeMs), ticketKeys: ticketKeyBytes(ring.current) }
}

function attachWith(server: tls.Server, ring: TicketKeyRing, cache: SessionCache | undefined): TicketKeyMode {
  const mode = attachTicketKeys(server, ring)
  if (cache) attachSessionCache(server, cache)
  return mode
}

export class SessionResumption implements ListenerResumption {
  readonly cache: SessionCache | undefined

  private constructor(readonly store: TicketKeyStore, o: SessionResumptionOptions) {
    this.cache = o.sessionIds === false ? undefined : new SessionCache({ ttlMs: store.lifetimeMs, ...o.cache })
  }

  /** Loads (or creates) `<tlsDir>/ticket-keys` and starts its rotation timer (unref'd). */
  static open(tlsDir: string, o: SessionResumptionOptions = {}): SessionResumption {
    const store = TicketKeyStore.open(join(tlsDir, TICKET_KEY_FILE), o)
    store.startRotation()
    return new SessionResumption(store, o)
  }

  serverOptions(listener: string): tls.TlsOptions {
    return serverOptionsWith(this.store.ring, this.store.lifetimeMs, listener)
  }

  /** Tickets from the store's keys, and session ids from the cache, on `server`. */
  attach(server: tls.Server): TicketKeyMode {
    return attachWith(server, this.store.ring, this.cache)
  }

  /** What a worker thread's listeners need: the keys (secret: never logged) and their lifetime. */
  share(): SharedResumptionInit {
    return { keys: this.store.ring.snapshot(), lifetimeMs: this.store.lifetimeMs, sessionIds: this.cache !== undefined }
  }

  /** Stops the rotation timer (the keys on disk stay for the next start). */
  close(): void {
    this.store.stop()
    this.cache?.clear()
  }
}

export interface SharedResumptionInit { keys: TicketKeysSnapshot; lifetimeMs: number; sessionIds: boolean }

/**
 * A worker thread's resumption: the owner's ticket keys (so a ticket resumes on any thread and
 * across restarts), replaced at each of the owner's rotations, and a session-id cache of its own
 * (a TLS 1.2 client without tickets that lands on another thread does a full handshake).
 */
export class SharedResumption implements ListenerResumption {
  readonly ring: TicketKeyRing
  readonly cache: SessionCache | undefined
  private readonly lifetimeMs: number

  constructor(init: SharedResumptionInit, cache?: SessionCacheOptions) {
    this.ring = TicketKeyRing.fromSnapshot(init.keys)
    this.lifetimeMs = init.lifetimeMs
    this.cache = init.sessionIds ? new SessionCache({ ttlMs: init.lifetimeMs, ...cache }) : undefined
  }

  serverOptions(listener: string): tls.TlsOptions {
    return serverOptionsWith(this.ring, this.lifetimeMs, listener)
  }

  attach(server: tls.Server): TicketKeyMode {
    return attachWith(server, this.ring, this.cache)
  }

  /** The owner rotated its keys. */
  update(keys: TicketKeysSnapshot): void {
    this.ring.replace(TicketKeyRing.fromSnapshot(keys).keys)
  }
}
