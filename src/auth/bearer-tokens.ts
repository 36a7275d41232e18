// Bearer tokens (JWT) for back ends: signed by a key of an issuer the hub trusts (a JWKS file, a JWKS
// URL, or the hub's own local signing key), for the hub's audience, unexpired, carrying roles. What
// the roles allow is decided by roles.ts; this file only says who the caller is and which roles it has.
import { readFileSync } from 'node:fs'
import { createLocalJWKSet, createRemoteJWKSet, errors, jwtVerify, type JWTVerifyGetKey, type JSONWebKeySet } from 'jose'
import { findRole, type RoleDefinition } from './roles.js'

/** Azure's resource id for IoT Hub's data plane: what Entra puts in `aud`. */
export const IOT_HUB_AUDIENCE = 'https://iothubs.azure.net'
/** Asymmetric signatures only: a symmetric or `none` algorithm would let anyone who can read a JWKS mint tokens. */
const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA']
/** The clock skew Azure allows on SAS tokens, allowed here on `exp` and `nbf` too. */
const CLOCK_TOLERANCE_SECONDS = 300
/** At most this much of a token is looked at (an Entra token is a few KB). */
export const MAX_BEARER_TOKEN_BYTES = 16 * 1024

export class BearerTokenError extends Error {}

export interface TrustedIssuer {
  issuer: string
  keys: JWTVerifyGetKey
}

export interface BearerPrincipal {
  /** who it is, for messages: `upn`, else `preferred_username`, else `oid`, else `sub` */
  name: string
  roles: RoleDefinition[]
  /** seconds since the epoch */
  expiry: number
}

/** A JWKS as the hub is configured with it: a file path, or an https URL (http on loopback only). */
export function jwksSource(spec: string): JWTVerifyGetKey {
  if (/^https?:\/\//i.test(spec)) {
    const url = new URL(spec)
    const loopback = url.hostname === '127.0.0.1' || url.hostname === 'localhost' || url.hostname === '[::1]'
    if (url.protocol === 'http:' && !loopback) throw new BearerTokenError(`a JWKS URL must use https unless it is on loopback (got ${spec})`)
    return withFetchBackoff(createRemoteJWKSet(url, { timeoutDuration: 5000, cooldownDuration: 30_000, cacheMaxAge: 10 * 60_000 }))
  }
  let set: JSONWebKeySet
  try {
    set = JSON.parse(readFileSync(spec, 'utf8')) as JSONWebKeySet
  } catch (e) {
    throw new BearerTokenError(`the JWKS file ${spec} cannot be read as JSON: ${(e as Error).message}`)
  }
  if (!Array.isArray(set?.keys)) throw new BearerTokenError(`the JWKS file ${spec} has no "keys" array`)
  return createLocalJWKSet(set)
}

/** After a failed fetch, how long the keys are not fetched again. */
export const JWKS_RETRY_AFTER_MS = 30_000

/**
 * jose backs off only after a fetch that worked: while the URL fails, every token naming the issuer
 * (signature unchecked yet: anyone can send one) would start a fetch. Here a failure holds fetches
 * off for JWKS_RETRY_AFTER_MS, and meanwhile the last key set that was fetched keeps verifying.
 */
export function withFetchBackoff(remote: Pick<ReturnType<typeof createRemoteJWKSet>, 'jwks'> & JWTVerifyGetKey, now: () => number = Date.now): JWTVerifyGetKey {
  let lastGood: JWTVerifyGetKey | undefined
  let retryAt = 0
  return async (header, token) => {
    if (now() < retryAt) {
      if (lastGood) return lastGood(header, token)
      throw new errors.JWKSTimeout('the trusted keys could not be fetched')
    }
    try {
      const key = await remote(header, token)
      const set = remote.jwks()
      if (set) lastGood = createLocalJWKSet(set)
      return key
    } catch (e) {
      if (e instanceof errors.JWKSNoMatchingKey || e instanceof errors.JWKSMultipleMatchingKeys) throw e
      retryAt = now() + JWKS_RETRY_AFTER_MS
      if (lastGood) return lastGood(header, token)
      throw e
    }
  }
}

export class BearerTokenVerifier {
  constructor(private readonly issuers: readonly TrustedIssuer[], private readonly audiences: readonly string[]) {}

  /** Verifies the token (the part after `Bearer `); rejects with BearerTokenError saying why. */
  async verify(jwt: string, nowSeconds = Date.now() / 1000): Promise<BearerPrincipal> {
    if (jwt.length > MAX_BEARER_TOKEN_BYTES) throw new BearerTokenError(`the bearer token is longer than ${MAX_BEARER_TOKEN_BYTES} bytes`)
    const issuer = this.issuerOf(jwt)
    let payload: Record<string, unknown>
    try {
      ({ payload } = await jwtVerify(jwt, issuer.keys, {
        issuer: issuer.issuer, audience: [...this.audiences], algorithms: ALGORITHMS, requiredClaims: ['exp'],
        clockTolerance: CLOCK_TOLERANCE_SECONDS, currentDate: new Date(nowSeconds * 1000),
      }))
    } catch (e) {
      throw new BearerTokenError(reason(e))
    }
    const claimed = payload.roles
    if (!Array.isArray(claimed) || claimed.length === 0) throw new BearerTokenError('the bearer token carries no roles')
    const roles = claimed.filter((r): r is string => typeof r === 'string').map(findRole).filter((r): r is RoleDefinition => r !== undefined)
    const name = [payload.upn, payload.preferred_username, payload.oid, payload.sub].find((v): v is string => typeof v === 'string' && v !== '') ?? 'unknown principal'
    return { name, roles, expiry: payload.exp as number }
  }

  /** The trusted issuer the token names in `iss` (read before its signature is checked, only to pick the keys). */
  private issuerOf(jwt: string): TrustedIssuer {
    const parts = jwt.split('.')
    if (parts.length !== 3) throw new BearerTokenError('the bearer token is not a JWS in compact form')
    let iss: unknown
    try {
      iss = (JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as Record<string, unknown>).iss
    } catch {
      throw new BearerTokenError('the bearer token\'s claims are not JSON')
    }
    const issuer = this.issuers.find((i) => i.issuer === iss)
    if (!issuer) throw new BearerTokenError(`the bearer token's issuer ${JSON.stringify(iss)} is not trusted by this hub`)
    return issuer
  }
}

function reason(e: unknown): string {
  if (e instanceof errors.JWTExpired) return 'the bearer token is expired'
  if (e instanceof errors.JWTClaimValidationFailed) {
    if (e.claim === 'aud') return `the bearer token is not for this hub's audience`
    if (e.claim === 'nbf') return 'the bearer token is not valid yet'
    if (e.reason === 'missing') return `the bearer token has no "${e.claim}" claim`
    return `the bearer token's "${e.claim}" claim is not accepted (${e.reason})`
  }
  if (e instanceof errors.JWSSignatureVerificationFailed) return 'the bearer token\'s signature does not verify'
  if (e instanceof errors.JWKSNoMatchingKey) return 'no trusted key matches the bearer token'
  if (e instanceof errors.JOSEAlgNotAllowed) return 'the bearer token\'s algorithm is not accepted'
  if (e instanceof errors.JWKSTimeout || (e instanceof Error && /fetch|ECONNREFUSED/i.test(e.message))) return 'the trusted keys could not be fetched'
  if (e instanceof errors.JOSEError) return `the bearer token is malformed (${e.code})`
  return 'the bearer token is malformed'
}
