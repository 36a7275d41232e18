// Remembers tokens already verified, so a reconnect storm of devices presenting the same tokens
// costs a parse and a Map lookup each instead of an HMAC. An entry is bound to the token's fields
// (not its text: spacing and field order do not make another entry) and to the exact key set it
// was checked against, and never outlives the token's expiry plus clock skew.
import { CLOCK_SKEW_SECONDS, parseSasToken, TokenError, type SasToken } from '../auth/sas-token.js'
import { verifySasTokenWasm } from './wasm-sas.js'

interface Verified {
  token: Readonly<SasToken>
  /** a copy: callers may change their array in place when keys rotate */
  keys: readonly string[]
}

function sameKeys(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

export class SasVerifierCache {
  /** Map order is recency order: the first entry is the least recently used. */
  private readonly entries = new Map<string, Verified>()

  constructor(
    readonly maxEntries = 10_000,
    private readonly verifyUncached: (token: SasToken, keys: readonly string[], nowSeconds: number) => void = verifySasTokenWasm,
  ) {
    if (!(maxEntries >= 1)) throw new RangeError('maxEntries must be at least 1')
  }

  get size(): number {
    return this.entries.size
  }

  /**
   * Parses and verifies `rawToken` (the full `SharedAccessSignature ...` text) against `keys`;
   * throws TokenError as verifySasToken does. Returns the parsed token (frozen: it may be shared).
   */
  verify(rawToken: string, keys: readonly string[], nowSeconds = Date.now() / 1000): Readonly<SasToken> {
    const parsed = parseSasToken(rawToken)
    const key = `${parsed.rawResource}\n${parsed.rawExpiry}\n${parsed.keyName ?? ''}\n${parsed.signature}`
    const hit = this.entries.get(key)
    if (hit) {
      if (hit.token.expiry + CLOCK_SKEW_SECONDS < nowSeconds) {
        this.entries.delete(key)
        throw new TokenError('token expired', 'expired')
      }
      if (sameKeys(hit.keys, keys)) {
        this.entries.delete(key) // move to the most recent end
        this.entries.set(key, hit)
        return hit.token
      }
      this.entries.delete(key) // keys changed: check again from scratch
    }
    const token = Object.freeze(parsed)
    this.verifyUncached(token, keys, nowSeconds)
    this.entries.set(key, { token, keys: keys.slice() })
    if (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!)
    return token
  }

  /** Drops every entry (e.g. after a registry-wide key change). */
  clear(): void {
    this.entries.clear()
  }
}
