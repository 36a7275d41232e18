// SharedAccessSignature tokens as Azure IoT Hub issues and checks them. The HMAC covers the `sr`
// value exactly as sent (still URL-encoded for device tokens, raw for service tokens): re-encoding
// it would break tokens from one SDK or another.
import { createHmac, timingSafeEqual } from 'node:crypto'

/** Azure tolerates this much clock skew past `se`. */
export const CLOCK_SKEW_SECONDS = 300

export interface SasToken {
  /** `sr` as it appeared in the token, still encoded. */
  rawResource: string
  /** `sr` URL-decoded, for matching against hub names and device ids. */
  resource: string
  signature: string
  expiry: number
  rawExpiry: string
  keyName: string | undefined
}

export class TokenError extends Error {
  constructor(message: string, readonly reason: 'malformed' | 'expired' | 'signature' | 'scope') {
    super(message)
  }
}

/** Far above any real token (~300 characters): the signature covers only sr and se, so nothing else may grow it. */
export const MAX_TOKEN_LENGTH = 4096
const FIELDS = new Set(['sr', 'sig', 'se', 'skn'])
/** 32 bytes: 42 characters, one whose low 2 bits are unused (so 16 of 64), and the padding */
const CANONICAL_SIGNATURE = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/

export function parseSasToken(token: string): SasToken {
  if (token.length > MAX_TOKEN_LENGTH) throw new TokenError(`token longer than ${MAX_TOKEN_LENGTH} characters`, 'malformed')
  const match = /^SharedAccessSignature\s+(\S+)$/.exec(token.trim())
  if (!match) throw new TokenError('not a SharedAccessSignature token', 'malformed')
  const fields = new Map<string, string>()
  for (const part of match[1]!.split('&')) {
    const eq = part.indexOf('=')
    if (eq <= 0) throw new TokenError('malformed token field', 'malformed')
    const name = part.slice(0, eq).toLowerCase()
    // fields the signature does not cover would let one token take many forms
    if (!FIELDS.has(name) || fields.has(name)) throw new TokenError(`unexpected token field ${JSON.stringify(name.slice(0, 16))}`, 'malformed')
    fields.set(name, part.slice(eq + 1))
  }
  const rawResource = fields.get('sr')
  const sig = fields.get('sig')
  const rawExpiry = fields.get('se')
  if (!rawResource || !sig || !rawExpiry) throw new TokenError('token needs sr, sig and se', 'malformed')
  if (!/^\d{1,12}$/.test(rawExpiry)) throw new TokenError('se must be seconds since the epoch', 'malformed')
  const skn = fields.get('skn')
  let resource: string, signature: string, keyName: string | undefined
  try {
    resource = decodeURIComponent(rawResource)
    signature = decodeURIComponent(sig)
    keyName = skn ? decodeURIComponent(skn) : undefined
  } catch {
    throw new TokenError('token is not URL-encoded correctly', 'malformed')
  }
  // base64 decoding skips characters outside its alphabet: only the canonical form of an HMAC-SHA256
  // is taken, or one signature padded with junk would be a new token each time
  if (!CANONICAL_SIGNATURE.test(signature)) throw new TokenError('sig must be the base64 of an HMAC-SHA256 (44 characters)', 'malformed')
  return { rawResource, resource, signature, expiry: Number(rawExpiry), rawExpiry, keyName }
}

export function signature(base64Key: string, rawResource: string, rawExpiry: string): string {
  return createHmac('sha256', Buffer.from(base64Key, 'base64')).update(`${rawResource}\n${rawExpiry}`).digest('base64')
}

/**
 * Whether `given` is the HMAC of the token's fields under `key` (raw key bytes: the base64-decoded
 * key as IoT Hub clients sign, or the key string's UTF-8 bytes as Event Hubs clients do).
 */
export function signatureMatches(key: Buffer, rawResource: string, rawExpiry: string, given: Buffer): boolean {
  const expected = createHmac('sha256', key).update(`${rawResource}\n${rawExpiry}`).digest()
  return expected.length === given.length && timingSafeEqual(expected, given)
}

/** Checks expiry and the signature against any of the given keys; throws TokenError otherwise. */
export function verifySasToken(token: SasToken, keys: readonly string[], nowSeconds = Date.now() / 1000): void {
  if (token.expiry + CLOCK_SKEW_SECONDS < nowSeconds) throw new TokenError('token expired', 'expired')
  const given = Buffer.from(token.signature, 'base64')
  for (const key of keys) {
    if (!key) continue
    const expected = Buffer.from(signature(key, token.rawResource, token.rawExpiry), 'base64')
    if (expected.length === given.length && timingSafeEqual(expected, given)) return
  }
  throw new TokenError('signature does not match', 'signature')
}

/** Makes a token as the SDKs do (used by tests, tools and the startup banner). */
export function createSasToken(rawResource: string, base64Key: string, keyName?: string, ttlSeconds = 3600): string {
  const se = String(Math.floor(Date.now() / 1000) + ttlSeconds)
  const sig = encodeURIComponent(signature(base64Key, rawResource, se))
  return `SharedAccessSignature sr=${rawResource}&sig=${sig}${keyName ? `&skn=${encodeURIComponent(keyName)}` : ''}&se=${se}`
}

/** Splits a decoded `sr` into host (port dropped, lower-cased) and path segments. */
export function splitResource(resource: string): { host: string; segments: string[] } {
  const withoutScheme = resource.replace(/^[a-z]+:\/\//i, '')
  const slash = withoutScheme.indexOf('/')
  const hostPort = slash < 0 ? withoutScheme : withoutScheme.slice(0, slash)
  const path = slash < 0 ? '' : withoutScheme.slice(slash + 1)
  const host = hostPort.replace(/:\d+$/, '').toLowerCase()
  return { host, segments: path === '' ? [] : path.replace(/\/$/, '').split('/') }
}
