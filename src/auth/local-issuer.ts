// The hub's own token issuer, so that role-based access can be tried without an identity provider:
// an ES256 key pair made on first start and kept in the data directory (0600, beside the other keys),
// trusted as issuer LOCAL_ISSUER, and used by `npm run token -- --role ...` to sign role tokens.
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createLocalJWKSet, exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from 'jose'
import { IOT_HUB_AUDIENCE, type TrustedIssuer } from './bearer-tokens.js'
import { findRole } from './roles.js'

export const LOCAL_ISSUER = 'hyperhub-local-issuer'
const KEY_FILE = 'local-issuer.jwk.json'
const KID = 'hyperhub-local-1'

function keyFile(dataDir: string): string {
  return join(dataDir, 'rbac', KEY_FILE)
}

/** The private key, made and stored (atomically, 0600) when the data directory has none. */
export async function ensureLocalIssuerKey(dataDir: string): Promise<JWK> {
  const file = keyFile(dataDir)
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as JWK
  const { privateKey } = await generateKeyPair('ES256', { extractable: true })
  const jwk = { ...(await exportJWK(privateKey)), kid: KID, alg: 'ES256', use: 'sig' }
  mkdirSync(join(dataDir, 'rbac'), { recursive: true, mode: 0o700 })
  const tmp = `${file}.tmp`
  writeFileSync(tmp, JSON.stringify(jwk), { mode: 0o600 })
  chmodSync(tmp, 0o600)
  renameSync(tmp, file)
  return jwk
}

/** The issuer as the hub trusts it: the public half only. */
export function localIssuer(privateJwk: JWK): TrustedIssuer {
  const { d: _private, ...publicJwk } = privateJwk
  return { issuer: LOCAL_ISSUER, keys: createLocalJWKSet({ keys: [publicJwk] }) }
}

/** A token for the named roles (names or role ids; an unknown one is an error, so a typo is not a silent refusal later). */
export async function signRoleToken(privateJwk: JWK, o: { roles: string[]; subject?: string; ttlSeconds?: number; audience?: string }): Promise<string> {
  for (const r of o.roles) if (!findRole(r)) throw new Error(`unknown role '${r}'`)
  const key = await importJWK(privateJwk, 'ES256')
  const now = Math.floor(Date.now() / 1000)
  return new SignJWT({ roles: o.roles })
    .setProtectedHeader({ alg: 'ES256', kid: privateJwk.kid ?? KID, typ: 'JWT' })
    .setIssuer(LOCAL_ISSUER).setAudience(o.audience ?? IOT_HUB_AUDIENCE).setSubject(o.subject ?? 'local-user')
    .setIssuedAt(now).setExpirationTime(now + (o.ttlSeconds ?? 3600))
    .sign(key)
}
