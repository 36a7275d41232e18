// Issue 17 item 3: bearer tokens are accepted only when a trusted issuer's key signed them for the
// hub's audience and they are in date. Exact refusals for each way a token can be wrong, and
// property-based runs: any string, and any one-character change to a good token, is refused with a
// BearerTokenError (never another exception, never accepted).
import { createServer, type Server } from 'node:http'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { createLocalJWKSet, errors, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose'
import { BearerTokenError, BearerTokenVerifier, IOT_HUB_AUDIENCE, JWKS_RETRY_AFTER_MS, jwksSource, withFetchBackoff } from '../src/auth/bearer-tokens.js'
import { ensureLocalIssuerKey, localIssuer, LOCAL_ISSUER, signRoleToken } from '../src/auth/local-issuer.js'
import { tempDir } from './helpers/test-hub.js'

const ISSUER = 'https://idp.example/tenant'
let signing: CryptoKey
let other: CryptoKey
let publicJwk: JWK
let verifier: BearerTokenVerifier
let dir: string
let jwksServer: Server
let jwksUrl: string

beforeAll(async () => {
  dir = tempDir('bearer-')
  const pair = await generateKeyPair('RS256', { extractable: true })
  signing = pair.privateKey
  publicJwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256' }
  other = (await generateKeyPair('RS256')).privateKey
  const file = join(dir, 'jwks.json')
  writeFileSync(file, JSON.stringify({ keys: [publicJwk] }))
  verifier = new BearerTokenVerifier([{ issuer: ISSUER, keys: jwksSource(file) }], [IOT_HUB_AUDIENCE])
  jwksServer = createServer((_req, res) => { res.setHeader('Content-Type', 'application/json'); res.end(JSON.stringify({ keys: [publicJwk] })) })
  await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve))
  jwksUrl = `http://127.0.0.1:${(jwksServer.address() as { port: number }).port}/keys`
})
afterAll(() => { jwksServer.close() })

interface Shape { iss?: string; aud?: string; exp?: number | null; nbf?: number; roles?: unknown; key?: CryptoKey; alg?: string; kid?: string }

async function token(o: Shape = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000)
  const jwt = new SignJWT({ ...(o.roles === undefined ? { roles: ['IoT Hub Data Reader'] } : { roles: o.roles }), upn: 'alice@example.com' })
    .setProtectedHeader({ alg: o.alg ?? 'RS256', kid: o.kid ?? 'k1' })
    .setIssuer(o.iss ?? ISSUER).setAudience(o.aud ?? IOT_HUB_AUDIENCE).setIssuedAt(now)
  if (o.exp !== null) jwt.setExpirationTime(o.exp ?? now + 3600)
  if (o.nbf !== undefined) jwt.setNotBefore(o.nbf)
  return jwt.sign(o.key ?? signing)
}

const refusal = (p: Promise<unknown>) => p.then(() => 'accepted', (e: Error) => `${e.constructor.name}: ${e.message}`)

describe('bearer tokens', () => {
  it('accepts a good token and reads its principal and roles', async () => {
    const p = await verifier.verify(await token({ roles: ['IoT Hub Data Reader', '494bdba2-168f-4f31-a0a1-191d2f7c028c', 'Someone Else\'s Role'] }))
    expect({ name: p.name, roles: p.roles.map((r) => r.name) }).toEqual({ name: 'alice@example.com', roles: ['IoT Hub Data Reader', 'IoT Hub Twin Contributor'] })
  })

  it('refuses each wrong token with the reason', async () => {
    const now = Math.floor(Date.now() / 1000)
    const cases: [string, Promise<string>][] = [
      ['expired beyond the 5-minute skew', token({ exp: now - 301 })],
      ['not yet valid', token({ nbf: now + 3600 })],
      ['another audience', token({ aud: 'https://management.azure.com' })],
      ['an untrusted issuer', token({ iss: 'https://evil.example' })],
      ['signed by another key', token({ key: other })],
      ['no exp', token({ exp: null })],
      ['no roles', token({ roles: [] })],
      ['roles not a list', token({ roles: 'IoT Hub Data Contributor' })],
      ['a kid the issuer does not have', token({ kid: 'k2' })],
    ]
    const got: Record<string, string> = {}
    for (const [name, t] of cases) got[name] = await refusal(verifier.verify(await t))
    expect(got).toEqual({
      'expired beyond the 5-minute skew': 'BearerTokenError: the bearer token is expired',
      'not yet valid': 'BearerTokenError: the bearer token is not valid yet',
      'another audience': 'BearerTokenError: the bearer token is not for this hub\'s audience',
      'an untrusted issuer': 'BearerTokenError: the bearer token\'s issuer "https://evil.example" is not trusted by this hub',
      'signed by another key': 'BearerTokenError: the bearer token\'s signature does not verify',
      'no exp': 'BearerTokenError: the bearer token has no "exp" claim',
      'no roles': 'BearerTokenError: the bearer token carries no roles',
      'roles not a list': 'BearerTokenError: the bearer token carries no roles',
      'a kid the issuer does not have': 'BearerTokenError: no trusted key matches the bearer token',
    })
    // within the skew: still good
    expect(await refusal(verifier.verify(await token({ exp: now - 200 })))).toBe('accepted')
  })

  it('refuses unsigned and symmetric-algorithm tokens', async () => {
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url')
    const claims = { iss: ISSUER, aud: IOT_HUB_AUDIENCE, exp: Math.floor(Date.now() / 1000) + 3600, roles: ['IoT Hub Data Contributor'] }
    expect(await refusal(verifier.verify(`${b64({ alg: 'none' })}.${b64(claims)}.`))).toBe('BearerTokenError: the bearer token\'s algorithm is not accepted')
    // HS256 keyed with the public key's text: the classic confusion attack
    const hs = await new SignJWT(claims).setProtectedHeader({ alg: 'HS256', kid: 'k1' }).sign(new TextEncoder().encode(JSON.stringify(publicJwk)))
    expect(await refusal(verifier.verify(hs))).toBe('BearerTokenError: the bearer token\'s algorithm is not accepted')
  })

  it('refuses any string that is not a good token, with a BearerTokenError', async () => {
    await fc.assert(fc.asyncProperty(fc.oneof(fc.string({ maxLength: 300 }), fc.array(fc.base64String({ maxLength: 80 }), { minLength: 3, maxLength: 3 }).map((p) => p.join('.'))), async (s) => {
      expect(await refusal(verifier.verify(s))).toMatch(/^BearerTokenError: /)
    }), { numRuns: 300 })
  })

  it('refuses a good token with any one character changed', async () => {
    const good = await token()
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.'
    await fc.assert(fc.asyncProperty(fc.nat({ max: good.length - 1 }), fc.constantFrom(...alphabet), async (at, c) => {
      fc.pre(good[at] !== c)
      const changed = good.slice(0, at) + c + good.slice(at + 1)
      const outcome = await refusal(verifier.verify(changed))
      // base64url's last character can carry unused bits: a change there may decode to the same bytes
      if (outcome === 'accepted') expect(Buffer.from(changed.split('.')[2] ?? '', 'base64url')).toEqual(Buffer.from(good.split('.')[2]!, 'base64url'))
      else expect(outcome).toMatch(/^BearerTokenError: /)
    }), { numRuns: 300 })
  })

  it('refuses a token longer than 16 KB before parsing it', async () => {
    expect(await refusal(verifier.verify('a'.repeat(16 * 1024 + 1)))).toBe('BearerTokenError: the bearer token is longer than 16384 bytes')
  })

  it('fetches keys from a JWKS URL on loopback, and refuses plain http elsewhere', async () => {
    const remote = new BearerTokenVerifier([{ issuer: ISSUER, keys: jwksSource(jwksUrl) }], [IOT_HUB_AUDIENCE])
    expect((await remote.verify(await token())).name).toBe('alice@example.com')
    expect(() => jwksSource('http://idp.example/keys')).toThrow('a JWKS URL must use https unless it is on loopback (got http://idp.example/keys)')
    const down = new BearerTokenVerifier([{ issuer: ISSUER, keys: jwksSource('http://127.0.0.1:1/keys') }], [IOT_HUB_AUDIENCE])
    expect(await refusal(down.verify(await token()))).toBe('BearerTokenError: the trusted keys could not be fetched')
  })

  it('while a JWKS URL fails, tokens naming its issuer do not each start a fetch', async () => {
    let fetches = 0
    const failing = createServer((_req, res) => { fetches++; res.statusCode = 500; res.end() })
    await new Promise<void>((resolve) => failing.listen(0, '127.0.0.1', resolve))
    try {
      const url = `http://127.0.0.1:${(failing.address() as { port: number }).port}/keys`
      const v = new BearerTokenVerifier([{ issuer: ISSUER, keys: jwksSource(url) }], [IOT_HUB_AUDIENCE])
      const t = await token()
      for (let i = 0; i < 50; i++) expect(await refusal(v.verify(t))).toMatch(/^BearerTokenError: /)
      expect(fetches).toBe(1)
    } finally {
      failing.close()
    }
  })

  it('keeps verifying with the last keys it fetched while the JWKS URL fails, and fetches again after the back-off', async () => {
    let clock = 0
    let failing = false
    let calls = 0
    const good = createLocalJWKSet({ keys: [publicJwk] })
    // a stand-in for jose's remote set: it answers from the JWKS until the URL starts failing
    const remote = Object.assign(async (h: Parameters<typeof good>[0], t: Parameters<typeof good>[1]) => {
      calls++
      if (failing) throw new errors.JWKSTimeout('fetch failed')
      return good(h, t)
    }, { jwks: () => ({ keys: [publicJwk] }) })
    const v = new BearerTokenVerifier([{ issuer: ISSUER, keys: withFetchBackoff(remote as never, () => clock) }], [IOT_HUB_AUDIENCE])
    const t = await token()
    expect((await v.verify(t)).name).toBe('alice@example.com')
    failing = true
    expect((await v.verify(t)).name).toBe('alice@example.com') // the failed refresh falls back to the last keys
    expect((await v.verify(t)).name).toBe('alice@example.com') // within the back-off: no call at all
    expect(calls).toBe(2)
    clock += JWKS_RETRY_AFTER_MS
    failing = false
    expect((await v.verify(t)).name).toBe('alice@example.com')
    expect(calls).toBe(3)
  })

  it('signs role tokens with the local issuer\'s key, kept 0600, and refuses an unknown role name', async () => {
    const key = await ensureLocalIssuerKey(dir)
    expect(await ensureLocalIssuerKey(dir)).toEqual(key) // made once
    const { statSync } = await import('node:fs')
    expect(statSync(join(dir, 'rbac', 'local-issuer.jwk.json')).mode & 0o777).toBe(0o600)
    const local = new BearerTokenVerifier([localIssuer(key)], [IOT_HUB_AUDIENCE])
    const p = await local.verify(await signRoleToken(key, { roles: ['IoT Hub Registry Contributor'], subject: 'ci' }))
    expect({ name: p.name, roles: p.roles.map((r) => r.name) }).toEqual({ name: 'ci', roles: ['IoT Hub Registry Contributor'] })
    await expect(signRoleToken(key, { roles: ['IoT Hub Registry Contributr'] })).rejects.toThrow("unknown role 'IoT Hub Registry Contributr'")
    // the local issuer's tokens are not another issuer's
    expect(await refusal(verifier.verify(await signRoleToken(key, { roles: ['Owner'] })))).toBe(`BearerTokenError: the bearer token's issuer "${LOCAL_ISSUER}" is not trusted by this hub`)
  })
})
