// Claims-based security for AMQP: clients put SAS tokens on the `$cbs` node for audiences, and every
// later link attach is authorised against the audiences the connection holds. Two signing
// conventions reach this endpoint: IoT Hub clients HMAC with the base64-decoded key, Event Hubs
// clients with the key string's UTF-8 bytes; both are accepted.
import { DeviceAuthError, LOCAL_AUTH_DISABLED, type Authenticator, type DeviceIdentity, type PolicyToken } from '../auth/authenticator.js'
import { hasRight, type Right } from '../auth/policies.js'
import { rolesAllow, type AccessNeed, type RoleDefinition } from '../auth/roles.js'
import { parseSasToken, signatureMatches, splitResource, CLOCK_SKEW_SECONDS, TokenError } from '../auth/sas-token.js'

export interface Grant {
  path: string[]
  expiry: number
  rights: Right[]
  /** a device's own token (or a policy token for one device): who it is */
  device?: DeviceIdentity
  /** a service token: the policy that signed it, checked again when policies change */
  policyToken?: PolicyToken
  /** a bearer token: the roles it carries (its `rights` are empty: roles decide) */
  roles?: RoleDefinition[]
}

/** A bare right is a device link's need: no role grants one. */
function needOf(need: Right | AccessNeed): AccessNeed {
  return typeof need === 'string' ? { right: need, role: 'sas-only' } : need
}

function grantAllows(g: Grant, need: AccessNeed): boolean {
  return g.roles ? rolesAllow(g.roles, need.role) : g.rights.includes(need.right)
}

/** An audience or address as host (port dropped) and path segments; scheme ignored. */
export function parseAudience(audience: string): { host: string; path: string[] } {
  const { host, segments } = splitResource(audience)
  return { host, path: segments.filter(Boolean) }
}


export class CbsAuthority {
  constructor(private readonly auth: Authenticator, private readonly hosts: Set<string>, private readonly eventHubsEntity: string) {}

  /**
   * A device's put-token (azure-iot-device-amqp): the audience is `{host}/devices/{id}`, still
   * URL-encoded; the token is signed with the device's key, or with a DeviceConnect policy's (skn).
   * Returns the grant for that device's links, or throws TokenError.
   */
  verifyDevice(token: string, audience: string, deviceId: string, nowSeconds = Date.now() / 1000): Grant {
    const aud = parseAudience(audience)
    if (!this.hosts.has(aud.host)) throw new TokenError('audience is not this hub', 'scope')
    let identity: DeviceIdentity
    try {
      identity = this.auth.authenticateDevice(token, deviceId, nowSeconds)
    } catch (e) {
      if (e instanceof DeviceAuthError) throw new TokenError(e.message, e.failure === 'unauthorized' ? 'signature' : 'scope')
      throw e
    }
    return { path: ['devices', deviceId], expiry: identity.expiry + CLOCK_SKEW_SECONDS, rights: ['DeviceConnect'], device: identity }
  }

  /** A module's put-token (`{host}/devices/{id}/modules/{m}`): the module's key, or a DeviceConnect policy's. */
  verifyModule(token: string, audience: string, deviceId: string, moduleId: string, nowSeconds = Date.now() / 1000): Grant {
    const aud = parseAudience(audience)
    if (!this.hosts.has(aud.host)) throw new TokenError('audience is not this hub', 'scope')
    let identity: DeviceIdentity
    try {
      identity = this.auth.authenticateModule(token, deviceId, moduleId, nowSeconds)
    } catch (e) {
      if (e instanceof DeviceAuthError) throw new TokenError(e.message, e.failure === 'unauthorized' ? 'signature' : 'scope')
      throw e
    }
    return { path: ['devices', deviceId, 'modules', moduleId], expiry: identity.expiry + CLOCK_SKEW_SECONDS, rights: ['DeviceConnect'], device: identity }
  }

  /**
   * A bearer token put on $cbs (`Bearer <jwt>`, as azure-iothub's token-credential clients do, for
   * the scope `https://iothubs.azure.net/.default`): it covers the whole hub, as far as its roles go.
   */
  async verifyBearer(body: string): Promise<Grant> {
    const principal = await this.auth.verifyBearer(body)
    return { path: [], expiry: principal.expiry + CLOCK_SKEW_SECONDS, rights: [], roles: principal.roles }
  }

  /** Validates a put-token; returns the grant, or throws TokenError. */
  verify(token: string, audience: string, nowSeconds = Date.now() / 1000): Grant {
    const t = parseSasToken(token)
    const aud = parseAudience(audience)
    const sr = parseAudience(t.resource)
    if (!this.hosts.has(aud.host) || !this.hosts.has(sr.host)) throw new TokenError('audience is not this hub', 'scope')
    // the token's resource must cover the audience it is put for
    if (sr.path.length > aud.path.length || sr.path.some((s, i) => s.toLowerCase() !== aud.path[i]!.toLowerCase())) throw new TokenError('token resource does not cover the audience', 'scope')
    if (t.expiry + CLOCK_SKEW_SECONDS < nowSeconds) throw new TokenError('token expired', 'expired')
    this.auth.checkLifetime(t, nowSeconds)
    // with local authentication off, policy keys open the built-in endpoint only (Azure's accepts nothing else)
    const builtInOnly = !this.auth.localAuth
    // (the Event Hubs client puts tokens for the entity, its $management and its partitions: all under the entity)
    if (builtInOnly && aud.path[0]?.toLowerCase() !== this.eventHubsEntity.toLowerCase()) throw new TokenError(LOCAL_AUTH_DISABLED, 'scope')
    const policy = t.keyName ? this.auth.policy(t.keyName) : undefined
    if (!policy) throw new TokenError('unknown policy', 'scope')
    const given = Buffer.from(t.signature, 'base64')
    const keys = [policy.primaryKey, policy.secondaryKey]
    const base64Key = keys.some((k) => signatureMatches(Buffer.from(k, 'base64'), t.rawResource, t.rawExpiry, given))
    if (!base64Key && !keys.some((k) => signatureMatches(Buffer.from(k, 'utf8'), t.rawResource, t.rawExpiry, given))) throw new TokenError('signature does not match', 'signature')
    // with local authentication off the grant reads the endpoint and nothing else (a hub named
    // `devices` must not turn an Event Hubs token into one for device links)
    const rights = (['RegistryRead', 'RegistryWrite', 'ServiceConnect', 'DeviceConnect'] as Right[]).filter((r) => hasRight(policy, r) && (!builtInOnly || r === 'ServiceConnect'))
    return { path: aud.path, expiry: t.expiry + CLOCK_SKEW_SECONDS, rights, policyToken: { keyName: policy.keyName, token, ...(base64Key ? {} : { utf8Key: true }) } }
  }
}

/** Tokens one connection may hold at once (Azure has such a limit, 403005 IotHubMaxCbsTokenExceeded; its value is not documented). */
export const MAX_GRANTS_PER_CONNECTION = 64

/** The grants one connection holds. */
export class ConnectionGrants {
  private grants: Grant[] = []

  /** A renewal replaces the grant for the same audience; expired grants are dropped; past the bound, refused. */
  add(g: Grant, nowSeconds = Date.now() / 1000): void {
    // device ids are case-sensitive: a token for `CX` must not replace (and so extend) one for `cx`
    const same = (a: Grant) => a.path.length === g.path.length && a.device?.device.deviceId === g.device?.device.deviceId
      && a.device?.module?.moduleId === g.device?.module?.moduleId && a.path.every((s, i) => s.toLowerCase() === g.path[i]!.toLowerCase())
    this.grants = this.grants.filter((a) => a.expiry >= nowSeconds && !same(a))
    if (this.grants.length >= MAX_GRANTS_PER_CONNECTION) throw new TokenError(`a connection holds at most ${MAX_GRANTS_PER_CONNECTION} tokens`, 'scope')
    this.grants.push(g)
  }

  /** Whether every grant passes the check. */
  every(check: (g: Grant) => boolean): boolean {
    return this.grants.every(check)
  }

  /** Whether every policy token among the grants is still signed by its policy's keys and carries the rights it granted. */
  stillHeld(auth: Authenticator): boolean {
    return this.grants.every((g) => {
      const held = g.policyToken ?? g.device?.policyToken
      return !held || g.rights.every((r) => auth.stillHolds(held, r))
    })
  }

  /** Whether a live grant whose path is a segment-wise prefix of a link address (a path, no host) allows `need`. */
  allows(address: string, need: Right | AccessNeed, nowSeconds = Date.now() / 1000): boolean {
    return this.grantFor(address, need, nowSeconds) !== undefined
  }

  /** The live grant that allows it (the most specific one: a device's own before a policy's). */
  grantFor(address: string, need: Right | AccessNeed, nowSeconds = Date.now() / 1000): Grant | undefined {
    const wanted = needOf(need)
    const path = address.split('/').filter(Boolean).map((s) => s.toLowerCase())
    let best: Grant | undefined
    for (const g of this.grants) {
      if (g.expiry < nowSeconds || !grantAllows(g, wanted) || g.path.length > path.length) continue
      if (!g.path.every((s, i) => s.toLowerCase() === path[i])) continue
      // a device's grant covers that device only, in its exact case, and none of its modules; a
      // module's covers that module only
      if (g.device) {
        const raw = address.split('/').filter(Boolean)
        if (raw[1] !== g.device.device.deviceId) continue
        const m = g.device.module
        if (m ? raw[2]?.toLowerCase() !== 'modules' || raw[3] !== m.moduleId : raw[2]?.toLowerCase() === 'modules') continue
      }
      if (!best || g.path.length > best.path.length) best = g
    }
    return best
  }
}
