// Puts a ring of session ticket keys on a node:tls server, so that tickets issued under a key that
// has since been rotated out of issuing still resume.
//
// Node 20's documented API holds one key (`ticketKeys`, `server.setTicketKeys()`, 48 bytes: name,
// HMAC key, AES key); its built-in callback discards any ticket whose name is not that key's, so a
// rotation would send every device with an older ticket through a full handshake. Node's native
// SecureContext also has `enableTicketKeyCallback()`, which routes OpenSSL's ticket key callback
// (SSL_CTX_set_tlsext_ticket_key_cb, used for TLS 1.2 and 1.3 tickets alike) to the context's
// `onticketkeycallback(name, iv, encrypt)` and takes back [result, hmacKey, aesKey, name?, iv?].
// It is undocumented (kept for Node's own test-https-resume-after-renew), so it is used only when it
// is there; otherwise the current key is set through the documented API and re-set on rotation,
// and tickets older than the last rotation do full handshakes.
import { randomBytes } from 'node:crypto'
import type tls from 'node:tls'
import { ticketKeyBytes, type TicketKeyRing } from './ticket-keys.js'

/** OpenSSL's answers: 0 ticket not usable (full handshake), 1 usable, 2 usable and replace it with a fresh one. */
const NOT_USABLE = 0
const USABLE = 1
const RENEW = 2
/** filler keys OpenSSL initialises its contexts with when the answer is "not usable" (it reads them either way) */
const FILLER = Buffer.alloc(16)

interface NativeContext {
  enableTicketKeyCallback?: () => void
  onticketkeycallback?: (name: Buffer, iv: Buffer, encrypt: boolean) => unknown[]
}

export type TicketKeyMode = 'ring' | 'single-key'

function nativeContext(server: tls.Server): NativeContext | undefined {
  // `_sharedCreds` is the SecureContext every accepted socket uses (replaced by setSecureContext)
  return (server as unknown as { _sharedCreds?: { context?: NativeContext } })._sharedCreds?.context
}

/** The callback: the current key issues, any kept key opens; an older one asks for a fresh ticket. */
function ticketKeyCallback(ring: TicketKeyRing): NonNullable<NativeContext['onticketkeycallback']> {
  return (name, _iv, encrypt) => {
    // a throw here would surface in the middle of OpenSSL as an uncaught exception: answer instead
    try {
      if (encrypt) {
        const k = ring.current
        return [USABLE, k.hmac, k.aes, k.name, randomBytes(16)]
      }
      const found = ring.find(name)
      if (!found) return [NOT_USABLE, FILLER, FILLER]
      return [found.current ? USABLE : RENEW, found.key.hmac, found.key.aes]
    } catch {
      return encrypt ? [-1] : [NOT_USABLE, FILLER, FILLER]
    }
  }
}

function install(server: tls.Server, ring: TicketKeyRing): TicketKeyMode {
  const ctx = nativeContext(server)
  if (ctx && typeof ctx.enableTicketKeyCallback === 'function') {
    ctx.enableTicketKeyCallback()
    ctx.onticketkeycallback = ticketKeyCallback(ring)
    return 'ring'
  }
  server.setTicketKeys(ticketKeyBytes(ring.current))
  return 'single-key'
}

/**
 * Tickets on `server` are issued and opened with `ring`'s keys from now on, through rotations and
 * through `server.setSecureContext()` (which builds a new context). Returns how.
 */
export function attachTicketKeys(server: tls.Server, ring: TicketKeyRing): TicketKeyMode {
  let mode = install(server, ring)
  const setSecureContext = server.setSecureContext.bind(server)
  server.setSecureContext = (options) => {
    setSecureContext(options)
    mode = install(server, ring)
  }
  // the ring mode reads the ring at each handshake; the single key has to be set again
  const unsubscribe = ring.onChange(() => { if (mode === 'single-key') server.setTicketKeys(ticketKeyBytes(ring.current)) })
  server.once('close', unsubscribe)
  return mode
}
