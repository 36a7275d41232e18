// Differential tests: WASM SHA-256, HMAC-SHA256, base64 and SAS verification against node:crypto,
// Buffer and verifySasToken; unit tests for the verified-token cache.
import { createHash, createHmac, randomBytes } from 'node:crypto'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { CLOCK_SKEW_SECONDS, createSasToken, parseSasToken, signature, TokenError, verifySasToken, type SasToken } from '../src/auth/sas-token.js'
import { base64DecodeWasm, base64EncodeWasm, hmacSha256Wasm, sha256Wasm, signatureWasm } from '../src/wasm/wasm-crypto.js'
import { SasVerifierCache } from '../src/wasm/sas-verifier-cache.js'
import { verifySasTokenWasm } from '../src/wasm/wasm-sas.js'

// lengths around the 55/56/64-byte padding edges come up often with this mix
const bytes = (max: number) => fc.oneof(fc.uint8Array({ maxLength: max }), fc.integer({ min: 50, max: 130 }).chain((n) => fc.uint8Array({ minLength: n, maxLength: n })))

describe('WASM crypto primitives vs node:crypto', () => {
  it('SHA-256', () => {
    fc.assert(fc.property(bytes(400), (data) => {
      expect(sha256Wasm(data).toString('hex')).toBe(createHash('sha256').update(data).digest('hex'))
    }), { numRuns: 3000 })
    expect(sha256Wasm(new Uint8Array(1_000_000).fill(97)).toString('hex')).toBe(createHash('sha256').update(Buffer.alloc(1_000_000, 97)).digest('hex'))
  })

  it('HMAC-SHA256, keys of 0–150 bytes (16–64 in the main mix)', () => {
    const key = fc.oneof({ weight: 4, arbitrary: fc.uint8Array({ minLength: 16, maxLength: 64 }) }, { weight: 1, arbitrary: fc.uint8Array({ maxLength: 150 }) })
    fc.assert(fc.property(key, bytes(300), (k, m) => {
      expect(hmacSha256Wasm(k, m).toString('hex')).toBe(createHmac('sha256', k).update(m).digest('hex'))
    }), { numRuns: 3000 })
  })

  it('base64 encoding', () => {
    fc.assert(fc.property(bytes(200), (data) => {
      expect(base64EncodeWasm(data)).toBe(Buffer.from(data).toString('base64'))
    }), { numRuns: 2000 })
  })

  it('base64 decoding reads strings exactly as Buffer.from(s, "base64") does', () => {
    // both alphabets, padding anywhere, whitespace, junk, and UTF-16 units above 0xff
    const unit = fc.oneof(
      { weight: 8, arbitrary: fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'.split('')) },
      { weight: 1, arbitrary: fc.constantFrom('=', '-', '_', ' ', '\n', '%', '$', '\u0163', '\u0100', '\u00e9', '😀') },
    )
    fc.assert(fc.property(fc.string({ unit, maxLength: 80 }), (text) => {
      expect(base64DecodeWasm(text).toString('hex')).toBe(Buffer.from(text, 'base64').toString('hex'))
    }), { numRuns: 4000 })
  })

  it('signature() of a SAS token', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 16, maxLength: 64 }), fc.string({ maxLength: 120 }), fc.nat(), (key, resource, se) => {
      const k = Buffer.from(key).toString('base64')
      expect(signatureWasm(k, resource, String(se))).toBe(signature(k, resource, String(se)))
    }), { numRuns: 2000 })
  })
})

function verdict(verify: (t: SasToken, keys: readonly string[], now: number) => void, token: SasToken, keys: readonly string[], now: number): string {
  try {
    verify(token, keys, now)
    return 'ok'
  } catch (e) {
    if (e instanceof TokenError) return e.reason
    throw e
  }
}

describe('verifySasTokenWasm vs verifySasToken', () => {
  const NOW = 1_800_000_000
  const tokenCase = fc.record({
    key: fc.uint8Array({ minLength: 16, maxLength: 64 }),
    otherKey: fc.uint8Array({ minLength: 16, maxLength: 64 }),
    resource: fc.oneof(fc.constant('myhub.azure-devices.net%2Fdevices%2Fthermostat-1'), fc.string({ minLength: 1, maxLength: 200 }).map(encodeURIComponent)),
    expiry: fc.integer({ min: NOW - 2 * CLOCK_SKEW_SECONDS, max: NOW + 3600 }),
    tamper: fc.constantFrom('none', 'none', 'sig-char', 'other-key', 'resource', 'truncate', 'url-safe', 'no-padding', 'junk'),
    keyOrder: fc.constantFrom('right-first', 'right-second', 'wrong-only', 'with-empty'),
  })

  it('gives the same verdict for valid, forged and expired tokens', () => {
    const counts: Record<string, number> = {}
    fc.assert(fc.property(tokenCase, (c) => {
      const key = Buffer.from(c.key).toString('base64')
      const other = Buffer.from(c.otherKey).toString('base64')
      let sig = signature(c.tamper === 'other-key' ? other : key, c.resource, String(c.expiry))
      if (c.tamper === 'sig-char') sig = (sig[0] === 'A' ? 'B' : 'A') + sig.slice(1)
      if (c.tamper === 'truncate') sig = sig.slice(0, 40)
      if (c.tamper === 'url-safe') sig = sig.replace(/\+/g, '-').replace(/\//g, '_')
      if (c.tamper === 'no-padding') sig = sig.replace(/=+$/, '')
      if (c.tamper === 'junk') sig = sig.slice(0, 10) + ' $' + sig.slice(10)
      const resource = c.tamper === 'resource' ? `${c.resource}x` : c.resource
      const raw = `SharedAccessSignature sr=${resource}&sig=${encodeURIComponent(sig)}&se=${c.expiry}`
      if (['truncate', 'url-safe', 'no-padding', 'junk'].includes(c.tamper) && !/^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/.test(sig)) {
        // not the canonical base64 of an HMAC-SHA256: refused before any verifier sees it
        expect(() => parseSasToken(raw)).toThrow('sig must be the base64 of an HMAC-SHA256 (44 characters)')
        counts.malformed = (counts.malformed ?? 0) + 1
        return
      }
      const token = parseSasToken(raw)
      const keys = { 'right-first': [key, other], 'right-second': [other, key], 'wrong-only': [other], 'with-empty': ['', key] }[c.keyOrder]
      const expected = verdict(verifySasToken, token, keys, NOW)
      expect(verdict(verifySasTokenWasm, token, keys, NOW)).toBe(expected)
      counts[expected] = (counts[expected] ?? 0) + 1
    }), { numRuns: 3000 })
    // the generator must really reach all three verdicts
    expect(Object.keys(counts).sort()).toEqual(['expired', 'malformed', 'ok', 'signature'])
  })

  it('honours the clock skew to the second', () => {
    const key = randomBytes(32).toString('base64')
    const token = parseSasToken(createSasToken('hub%2Fdevices%2Fd', key))
    expect(() => verifySasTokenWasm(token, [key], token.expiry + CLOCK_SKEW_SECONDS)).not.toThrow()
    expect(() => verifySasTokenWasm(token, [key], token.expiry + CLOCK_SKEW_SECONDS + 0.001)).toThrow(expect.objectContaining({ reason: 'expired' }))
  })
})

describe('SasVerifierCache', () => {
  const key = randomBytes(32).toString('base64')
  const rotated = randomBytes(32).toString('base64')
  const raw = createSasToken('hub%2Fdevices%2Fd', key, undefined, 600)
  const expiry = parseSasToken(raw).expiry
  const now = expiry - 600

  function counting(): { cache: SasVerifierCache; calls: () => number } {
    let n = 0
    const cache = new SasVerifierCache(3, (t, k, s) => { n++; verifySasTokenWasm(t, k, s) })
    return { cache, calls: () => n }
  }

  it('verifies once, then answers from the cache with the parsed token', () => {
    const { cache, calls } = counting()
    const first = cache.verify(raw, [key], now)
    expect(first.resource).toBe('hub/devices/d')
    expect(cache.verify(raw, [key], now + 1)).toBe(first)
    expect(calls()).toBe(1)
    expect(Object.isFrozen(first)).toBe(true)
  })

  it('never accepts a cached token past expiry + skew', () => {
    const { cache } = counting()
    cache.verify(raw, [key], now)
    expect(() => cache.verify(raw, [key], expiry + CLOCK_SKEW_SECONDS)).not.toThrow()
    expect(() => cache.verify(raw, [key], expiry + CLOCK_SKEW_SECONDS + 1)).toThrow(expect.objectContaining({ reason: 'expired' }))
    expect(cache.size).toBe(0)
  })

  it('does not let a token verified with one key set pass for another', () => {
    const { cache, calls } = counting()
    cache.verify(raw, [key, rotated], now)
    expect(() => cache.verify(raw, [rotated], now)).toThrow(expect.objectContaining({ reason: 'signature' }))
    expect(() => cache.verify(raw, [rotated, key], now)).not.toThrow() // same keys, other order: checked again
    expect(calls()).toBe(3)
  })

  it('sees keys changed in place in the caller\'s array', () => {
    const { cache } = counting()
    const keys = [key]
    cache.verify(raw, keys, now)
    keys[0] = rotated
    expect(() => cache.verify(raw, keys, now)).toThrow(expect.objectContaining({ reason: 'signature' }))
  })

  it('does not cache failures, and stays within its bound (least recently used goes first)', () => {
    const { cache, calls } = counting()
    expect(() => cache.verify(raw, [rotated], now)).toThrow(TokenError)
    expect(cache.size).toBe(0)
    const tokens = [1, 2, 3, 4].map((i) => createSasToken(`hub%2Fdevices%2Fd${i}`, key, undefined, 600 + i))
    cache.verify(tokens[0]!, [key], now)
    cache.verify(tokens[1]!, [key], now)
    cache.verify(tokens[2]!, [key], now)
    cache.verify(tokens[0]!, [key], now) // refreshes 0
    cache.verify(tokens[3]!, [key], now) // evicts 1
    expect(cache.size).toBe(3)
    const before = calls()
    cache.verify(tokens[0]!, [key], now)
    expect(calls()).toBe(before)
    cache.verify(tokens[1]!, [key], now)
    expect(calls()).toBe(before + 1)
  })

  it('rejects malformed tokens like parseSasToken', () => {
    expect(() => new SasVerifierCache().verify('Bearer x', [key], now)).toThrow(expect.objectContaining({ reason: 'malformed' }))
  })
})
