// Who may do what: service callers present a policy token (skn = policy name), devices present a
// token signed with their own key, or with a DeviceConnect policy's key.
import type { DeviceRecord, DeviceRegistry } from '../registry/device-registry.js'
import type { ModuleRecord } from '../registry/module-registry.js'
import type { X509Certificate } from 'node:crypto'
import { createHash } from 'node:crypto'
import { HubError } from '../rest/hub-error.js'
import { hasRight, OWNER_POLICY, type AccessPolicy, type Permission, type Right } from './policies.js'
import { PolicyRegistry } from './policy-registry.js'
import { parseSasToken, signatureMatches, splitResource, verifySasToken, TokenError, type SasToken } from './sas-token.js'
import { SasVerifierCache } from '../wasm/sas-verifier-cache.js'
import { BearerTokenError, type BearerPrincipal, type BearerTokenVerifier } from './bearer-tokens.js'
import { rolesAllow, type RoleNeed } from './roles.js'
import { CertificateAuthorities, commonName, inDate } from './certificate-authorities.js'

const BEARER = /^Bearer\s+/i
export const isBearer = (header: string | undefined): header is string => header !== undefined && BEARER.test(header)
export const LOCAL_AUTH_DISABLED = 'local authentication is disabled on this hub: shared access policy tokens are refused, use a bearer token'

/** `wasm`: HMAC in WebAssembly with a cache of verified tokens; `js`: node:crypto every time. */
export type SasVerifierKind = 'wasm' | 'js'

export const DEFAULT_MAX_TOKEN_LIFETIME_DAYS = 365

export type DeviceAuthFailure = 'unauthorized' | 'not-found' | 'disabled'

export class DeviceAuthError extends Error {
  constructor(readonly failure: DeviceAuthFailure, message: string) { super(message) }
}

export interface DeviceIdentity {
  device: DeviceRecord
  /** set when a module authenticated: it connects on its device's behalf, under its own keys */
  module?: ModuleRecord
  /** `iothub-connection-auth-method` as Azure stamps it. */
  authMethod: string
  /** Seconds since the epoch when the token stops being valid. */
  expiry: number
  /** set when a shared access policy's key signed the token: the connection ends if that key is revoked */
  policyToken?: PolicyToken
  /** a CA-signed device's certificate chain, and the verified CA it led to: checked again when that CA changes */
  certificateChain?: readonly X509Certificate[]
  certificateIssuer?: string
}

/** A token signed with a policy's key, kept to check again when the policy changes. */
export interface PolicyToken {
  keyName: string
  token: string
  /** signed as Event Hubs clients sign: HMAC keyed with the key string's UTF-8 bytes */
  utf8Key?: boolean
}

function signedWithUtf8Key(raw: string, keys: string[]): boolean {
  try {
    const t = parseSasToken(raw)
    const given = Buffer.from(t.signature, 'base64')
    return keys.some((k) => signatureMatches(Buffer.from(k, 'utf8'), t.rawResource, t.rawExpiry, given))
  } catch {
    return false
  }
}

export class Authenticator {
  private readonly hosts: Set<string>
  readonly policies: PolicyRegistry

  private readonly cache: SasVerifierCache | undefined
  /** who verifies bearer tokens (none: every bearer token is refused) */
  bearer: BearerTokenVerifier | undefined
  /** false (Azure's disableLocalAuth): tokens signed with a policy's key are refused, but on the built-in endpoint */
  localAuth = true
  /** the CA certificates CA-signed devices chain to (none until the hub has them) */
  authorities: Pick<CertificateAuthorities, 'verifiedIssuerOf' | 'verifiedPath'> = new CertificateAuthorities([])
  /** module identities, once the hub has them (none: every module is unknown) */
  modules: { get(deviceId: string, moduleId: string): ModuleRecord | undefined } = { get: () => undefined }

  constructor(hostNames: string[], policies: AccessPolicy[] | PolicyRegistry, private readonly registry: DeviceRegistry, verifier: SasVerifierKind = 'wasm',
    /** a token whose `se` lies further ahead than this is refused (a stolen token must not live for ever) */
    private readonly maxTokenLifetimeSeconds = DEFAULT_MAX_TOKEN_LIFETIME_DAYS * 86_400) {
    this.cache = verifier === 'wasm' ? new SasVerifierCache() : undefined
    this.hosts = new Set(hostNames.map((h) => h.replace(/:\d+$/, '').toLowerCase()))
    this.policies = policies instanceof PolicyRegistry ? policies : new PolicyRegistry(policies)
  }

  policy(name: string): AccessPolicy | undefined { return this.policies.get(name) }

  /** Whether a CA-signed identity's chain still leads to a verified CA (true for every other identity). */
  chainStillVerified(identity: DeviceIdentity): boolean {
    return !identity.certificateChain || this.authorities.verifiedIssuerOf(identity.certificateChain) !== undefined
  }

  /**
   * Whether a policy token accepted earlier would still be accepted for `right`: its policy exists,
   * still grants the right, and one of its current keys signs it (expiry is watched elsewhere).
   */
  stillHolds(held: PolicyToken, right: Right): boolean {
    const policy = this.policies.get(held.keyName)
    if (!policy || !hasRight(policy, right)) return false
    try {
      const token = parseSasToken(held.token)
      verifySasToken(token, [policy.primaryKey, policy.secondaryKey], token.expiry)
      return true
    } catch {
      // Event Hubs clients sign with the key's UTF-8 bytes (amqp/cbs-auth.ts)
      return held.utf8Key === true && signedWithUtf8Key(held.token, [policy.primaryKey, policy.secondaryKey])
    }
  }

  private verify(raw: string, token: SasToken, keys: readonly string[], nowSeconds = Date.now() / 1000): void {
    if (this.cache) this.cache.verify(raw, keys, nowSeconds)
    else verifySasToken(token, keys, nowSeconds)
  }

  /** Refuses a token that is valid for longer than the hub allows. */
  checkLifetime(token: SasToken, nowSeconds = Date.now() / 1000): void {
    if (token.expiry - nowSeconds > this.maxTokenLifetimeSeconds) {
      throw new TokenError(`token is valid for more than the hub's limit of ${Math.round(this.maxTokenLifetimeSeconds / 86_400)} days`, 'expired')
    }
  }

  private parse(raw: string): { token: SasToken; segments: string[] } {
    const token = parseSasToken(raw)
    this.checkLifetime(token)
    const { host, segments } = splitResource(token.resource)
    if (!this.hosts.has(host)) throw new TokenError(`token audience ${host} is not this hub`, 'scope')
    return { token, segments }
  }

  /**
   * Checks a bearer token for a service route or link; throws HubError 401003. `operation` names
   * what was asked (`GET on /devices/d1`), as Azure's refusal does.
   */
  async authorizeBearer(header: string, need: RoleNeed, operation: string): Promise<BearerPrincipal> {
    if (need === 'sas-only') throw new HubError(401003, 'Unauthorized: the built-in endpoint accepts shared access signatures only, as Azure\'s Event Hubs-compatible endpoint does')
    let principal: BearerPrincipal
    try {
      principal = await this.verifyBearer(header)
    } catch (e) {
      if (e instanceof BearerTokenError) throw new HubError(401003, `Unauthorized: ${e.message}`)
      throw e
    }
    if (!rolesAllow(principal.roles, need)) throw new HubError(401003, `Principal ${principal.name} is not authorized for ${operation} due to no assigned permissions`)
    return principal
  }

  /** Who a bearer token (`Bearer …`) names, and its roles; rejects with BearerTokenError. */
  verifyBearer(header: string): Promise<BearerPrincipal> {
    if (!this.bearer) return Promise.reject(new BearerTokenError('this hub trusts no bearer token issuer'))
    return this.bearer.verify(header.replace(BEARER, ''))
  }

  /**
   * Checks an Authorization header's SAS token for a service route; throws HubError 401003.
   * `builtInEndpoint`: the built-in endpoint, which keeps shared access signatures when local
   * authentication is off (Azure's accepts nothing else).
   */
  authorizeService(header: string | undefined, right: Permission, builtInEndpoint = false): AccessPolicy {
    if (!header) throw new HubError(401003, 'Authorization header missing')
    if (isBearer(header) && builtInEndpoint) throw new HubError(401003, 'Unauthorized: the built-in endpoint accepts shared access signatures only, as Azure\'s Event Hubs-compatible endpoint does')
    if (!this.localAuth && !builtInEndpoint) throw new HubError(401003, `Unauthorized: ${LOCAL_AUTH_DISABLED}`)
    let policy: AccessPolicy | undefined
    try {
      const { token, segments } = this.parse(header)
      if (segments.length > 0) throw new TokenError('a service token must be scoped to the hub', 'scope')
      policy = token.keyName ? this.policies.get(token.keyName) : undefined
      if (!policy) throw new TokenError('unknown policy', 'scope')
      this.verify(header, token, [policy.primaryKey, policy.secondaryKey])
    } catch (e) {
      if (e instanceof TokenError) throw new HubError(401003, `Unauthorized: ${e.message}`)
      throw e
    }
    if (!hasRight(policy, right)) {
      throw new HubError(401003, `Authorization rule '${policy.keyName}' does not allow access for '${right}'${right === 'ControlPlane' ? ` (hub configuration needs the ${OWNER_POLICY} policy)` : ''}`)
    }
    return policy
  }

  /** Checks a device's SAS token (the MQTT password). */
  authenticateDevice(password: string | undefined, deviceId: string, nowSeconds = Date.now() / 1000): DeviceIdentity {
    return this.authenticate(password, deviceId, undefined, nowSeconds)
  }

  /** Checks a module's SAS token: signed with the module's key (sr `…/devices/{d}/modules/{m}`) or a DeviceConnect policy's. */
  authenticateModule(password: string | undefined, deviceId: string, moduleId: string, nowSeconds = Date.now() / 1000): DeviceIdentity {
    return this.authenticate(password, deviceId, moduleId, nowSeconds)
  }

  /**
   * A device (or module) that presented a client certificate and no password; `chain` is the leaf
   * first, then what else the client sent. Registered as `selfSigned`, the leaf's SHA-1 or SHA-256
   * thumbprint must be its primary or secondary one; as `certificateAuthority`, the chain must lead
   * to a verified CA and the leaf's CN be the device id (`{device}/{module}` for a module). Either
   * way the leaf must be within its validity dates (auth.md "X.509").
   */
  authenticateX509(chain: readonly X509Certificate[], deviceId: string, moduleId?: string, nowMs = Date.now()): DeviceIdentity {
    const cert = chain[0]
    if (!cert) throw new DeviceAuthError('unauthorized', 'no SAS token and no client certificate')
    const device = this.registry.get(deviceId)
    if (!device) throw new DeviceAuthError('not-found', `device ${deviceId} is not registered`)
    const module = moduleId === undefined ? undefined : this.modules.get(deviceId, moduleId)
    if (moduleId !== undefined && !module) throw new DeviceAuthError('not-found', `module ${moduleId} of device ${deviceId} is not registered`)
    const auth = (module ?? device).authentication
    const what = moduleId === undefined ? 'device' : 'module'
    let caChain: { chain: readonly X509Certificate[]; issuer: string } | undefined
    if (auth.type !== 'selfSigned' && auth.type !== 'certificateAuthority') throw new DeviceAuthError('unauthorized', `the ${what} does not use X.509: a client certificate is not its credential`)
    if (!inDate(cert, nowMs)) throw new DeviceAuthError('unauthorized', 'the client certificate is expired or not yet valid')
    if (auth.type === 'certificateAuthority') {
      const expected = moduleId === undefined ? deviceId : `${deviceId}/${moduleId}`
      const cn = commonName(cert)
      if (cn !== expected) throw new DeviceAuthError('unauthorized', `the client certificate's CN ${cn === undefined ? '(none, or more than one)' : `'${cn}'`} is not the ${what} id '${expected}'`)
      const verified = this.authorities.verifiedPath(chain, nowMs)
      if (!verified) throw new DeviceAuthError('unauthorized', 'the client certificate\'s chain does not lead to a verified CA certificate of this hub')
      // the path as verified (a resumed session's leaf completed): what later re-checks walk
      caChain = { chain: verified.path, issuer: verified.issuer.name }
    } else {
      const sha1 = createHash('sha1').update(cert.raw).digest('hex').toUpperCase()
      const sha256 = createHash('sha256').update(cert.raw).digest('hex').toUpperCase()
      const registered = [auth.x509Thumbprint.primaryThumbprint, auth.x509Thumbprint.secondaryThumbprint]
        .filter((t): t is string => typeof t === 'string' && t !== '').map((t) => t.replace(/:/g, '').toUpperCase())
      if (!registered.some((t) => t === sha1 || t === sha256)) {
        throw new DeviceAuthError('unauthorized', `Thumbprint does not match configuration: Thumbprint: SHA1Hash=${sha1}, SHA2Hash=${sha256}; Configuration: PrimaryThumbprint=${auth.x509Thumbprint.primaryThumbprint ?? ''}, SecondaryThumbprint=${auth.x509Thumbprint.secondaryThumbprint ?? ''}`)
      }
    }
    if (device.status === 'disabled') throw new DeviceAuthError('disabled', `device ${deviceId} is disabled`)
    return {
      device, ...(module ? { module } : {}), ...(caChain ? { certificateChain: caChain.chain, certificateIssuer: caChain.issuer } : {}),
      // the connection ends when the certificate does (the 5-minute skew SAS gets is taken off again)
      expiry: Math.floor(Date.parse(cert.validTo) / 1000) - 300,
      authMethod: JSON.stringify({ scope: what, type: 'x509Certificate', issuer: 'external', acceptingIpFilterRule: null }),
    }
  }

  private authenticate(password: string | undefined, deviceId: string, moduleId: string | undefined, nowSeconds: number): DeviceIdentity {
    if (!password) throw new DeviceAuthError('unauthorized', 'no SAS token and no client certificate')
    const device = this.registry.get(deviceId)
    if (!device) throw new DeviceAuthError('not-found', `device ${deviceId} is not registered`)
    const module = moduleId === undefined ? undefined : this.modules.get(deviceId, moduleId)
    if (moduleId !== undefined && !module) throw new DeviceAuthError('not-found', `module ${moduleId} of device ${deviceId} is not registered`)
    const identity = module ?? device
    const target = moduleId === undefined ? ['devices', deviceId] : ['devices', deviceId, 'modules', moduleId]
    try {
      const { token, segments } = this.parse(password)
      let keys: string[]
      let scope: 'device' | 'module' | 'hub'
      let policyToken: PolicyToken | undefined
      if (token.keyName) {
        if (!this.localAuth) throw new TokenError(LOCAL_AUTH_DISABLED, 'scope')
        const policy = this.policies.get(token.keyName)
        if (!policy || !hasRight(policy, 'DeviceConnect')) throw new TokenError('policy does not grant DeviceConnect', 'scope')
        // a policy token may cover the hub, all devices, this device, or (a module) this module
        if (segments.length > target.length || segments.length === 3 || segments.some((s, i) => s !== target[i])) throw new TokenError('token is for another resource', 'scope')
        keys = [policy.primaryKey, policy.secondaryKey]
        scope = 'hub'
        policyToken = { keyName: policy.keyName, token: password }
      } else {
        // a module's own token names the module; a device's names the device (neither opens the other)
        if (segments.length !== target.length || segments.some((s, i) => s !== target[i])) {
          throw new TokenError(moduleId === undefined ? 'token is for another device' : 'token is for another module or the device', 'scope')
        }
        if (identity.authentication.type !== 'sas') throw new TokenError(`${moduleId === undefined ? 'device' : 'module'} does not use SAS`, 'scope')
        keys = [identity.authentication.symmetricKey.primaryKey ?? '', identity.authentication.symmetricKey.secondaryKey ?? '']
        scope = moduleId === undefined ? 'device' : 'module'
      }
      this.verify(password, token, keys, nowSeconds)
      if (device.status === 'disabled') throw new DeviceAuthError('disabled', `device ${deviceId} is disabled`)
      return {
        device,
        ...(module ? { module } : {}),
        ...(policyToken ? { policyToken } : {}),
        expiry: token.expiry,
        authMethod: JSON.stringify({ scope, type: 'sas', issuer: 'iothub', acceptingIpFilterRule: null }),
      }
    } catch (e) {
      if (e instanceof TokenError) throw new DeviceAuthError('unauthorized', e.message)
      throw e
    }
  }
}
