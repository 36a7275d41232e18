// TLS session resumption for the hub's listeners, so that a reconnecting device skips the full
// handshake (its ECDHE and the server's ECDSA signature, ~1.3 ms of hub CPU each): tickets for
// TLS 1.3 and 1.2 whose keys are kept in the data directory and rotated (ticket-key-store.ts,
// ticket-key-callback.ts), session ids for TLS 1.2 clients without tickets (session-cache.ts), and
// the listeners' suite order (cipher-policy.ts).
//
// Use: one SessionResumption per hub (its file is shared by every listener); per listener, merge
// `serverOptions(name)` into the tls.createServer options and call `attach(server)`. A worker thread
// that runs its own servers gets `store.ring.snapshot()` (and each rotation's) from the owner and
// uses `TicketKeyRing.fromSnapshot`, `attachTicketKeys`, `attachSessionCache` directly.
import { join } from 'node:path'
import type tls from 'node:tls'
import { cipherOptions } from './cipher-policy.js'
import { attachSessionCache, SessionCache, type SessionCacheOptions } from './session-cache.js'
import { attachTicketKeys, type TicketKeyMode } from './ticket-key-callback.js'
import { TICKET_LIFETIME_MS, TicketKeyStore, type TicketKeyStoreOptions } from './ticket-key-store.js'
import { ticketKeyBytes } from './ticket-keys.js'

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

export class SessionResumption {
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
    // ticketKeys as well: a server that is never attached still issues tickets a restart can open
    return { ...tlsSessionOptions(listener, this.store.lifetimeMs), ticketKeys: ticketKeyBytes(this.store.ring.current) }
  }

  /** Tickets from the store's keys, and session ids from the cache, on `server`. */
  attach(server: tls.Server): TicketKeyMode {
    const mode = attachTicketKeys(server, this.store.ring)
    if (this.cache) attachSessionCache(server, this.cache)
    return mode
  }

  /** Stops the rotation timer (the keys on disk stay for the next start). */
  close(): void {
    this.store.stop()
    this.cache?.clear()
  }
}
