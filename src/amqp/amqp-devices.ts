// Devices and modules on the AMQP endpoint: their put-tokens (`{host}/devices/{id}`, or
// `…/modules/{m}`), their links, and one device session (device-session.ts) per device (or module)
// and connection. A device token opens the session at
// once (the device shows as connected, and a newer connection of the device, MQTT or AMQP, takes
// over); a DeviceConnect policy token for the whole hub opens one when a link of a device attaches.
import type rhea from 'rhea'
import type { X509Certificate } from 'node:crypto'
import { DeviceAuthError } from '../auth/authenticator.js'
import { CLOCK_SKEW_SECONDS } from '../auth/sas-token.js'
import type { DeviceIdentity } from '../auth/authenticator.js'
import type { DeviceEdge } from '../edge/device-edge.js'
import type { Logger } from '../log.js'
import type { DeviceRegistry } from '../registry/device-registry.js'
import { moduleKey } from '../shard-protocol.js'
import type { ConnectionGrants, Grant } from './cbs-auth.js'
import { DEVICE_LINK_RIGHTS, type DeviceLinkAddress } from './device-addresses.js'
import { AmqpDeviceSession, type AmqpDeviceHost } from './device-session.js'
import { AmqpError } from './event-hubs-endpoint.js'
import type { AmqpFrameGuard } from './frame-guard.js'
import type { OutgoingBudget } from './outgoing-budget.js'

/** What the devices need of one AMQP connection. */
export interface DeviceConnectionPort {
  readonly transportKind: 'amqps' | 'amqpwss'
  readonly guard: AmqpFrameGuard
  readonly budget: OutgoingBudget
  readonly grants: ConnectionGrants
  /** the connection broke a rule (a transfer without credit): it is closed */
  violation(kind: 'transfer-without-credit' | 'deliveries-unsettled'): void
  /** the client certificate of the TLS handshake, if any (X.509 devices put no token) */
  peerCertificates(): X509Certificate[] | undefined
  /** a device link was authorised by that certificate: the connection is authenticated */
  certificateAccepted(): void
}

class ConnectionDevices implements AmqpDeviceHost {
  readonly sessions = new Map<string, AmqpDeviceSession>()
  private readonly holding = new Set<AmqpDeviceSession>()

  constructor(readonly port: DeviceConnectionPort, readonly log: Logger) {}

  get transportKind(): 'amqps' | 'amqpwss' { return this.port.transportKind }
  get budget(): OutgoingBudget { return this.port.budget }

  holdReading(session: AmqpDeviceSession, hold: boolean): void {
    if (hold) this.holding.add(session)
    else this.holding.delete(session)
    if (this.holding.size > 0) this.port.guard.pauseInput('devices')
    else this.port.guard.resumeInput('devices')
  }

  violation(kind: 'transfer-without-credit' | 'deliveries-unsettled'): void { this.port.violation(kind) }

  sessionClosed(session: AmqpDeviceSession): void {
    if (this.sessions.get(session.clientId) === session) this.sessions.delete(session.clientId)
    this.holding.delete(session)
  }
}

export class AmqpDevices {
  private readonly byConnection = new WeakMap<rhea.Connection, ConnectionDevices>()
  private readonly linkSessions = new WeakMap<rhea.link, AmqpDeviceSession>()

  constructor(private readonly edge: DeviceEdge, private readonly registry: DeviceRegistry, private readonly log: Logger) {}

  /** The connection was accepted: its devices live here until it closes. */
  connected(conn: rhea.Connection, port: DeviceConnectionPort): void {
    this.byConnection.set(conn, new ConnectionDevices(port, this.log))
  }

  /** A device's put-token was accepted: its session opens, or takes the renewed identity. */
  authenticated(conn: rhea.Connection, grant: Grant): void {
    if (grant.device) this.session(conn, grant.device, true)
  }

  /**
   * A link to a device address attached; refused (AmqpError) unless a live grant of the connection
   * covers that device with DeviceConnect and the device may connect.
   */
  attach(conn: rhea.Connection, link: rhea.link, address: string, parsed: DeviceLinkAddress): string {
    const devices = this.devicesOf(conn)
    const kind = parsed.kind
    // a module has no C2D queue (IoT Edge routes to its inputs; there is no edgeHub here)
    if (!kind || (parsed.moduleId !== undefined && kind === 'c2d')) throw new AmqpError('amqp:not-found', `The messaging entity '${address}' could not be found.`)
    const under = (deviceId: string, moduleId: string | undefined) => moduleId === undefined ? `/devices/${deviceId}` : `/devices/${deviceId}/modules/${moduleId}`
    // each id as written first (an id may hold `%`), then URL-decoded; ids compare exactly
    const moduleIds = parsed.moduleId === undefined ? [undefined] : [...new Set([parsed.rawModuleId, parsed.moduleId])]
    let found: { deviceId: string; moduleId: string | undefined; grant: Grant } | undefined
    search: for (const deviceId of new Set([parsed.rawDeviceId, parsed.deviceId])) {
      for (const moduleId of moduleIds) {
        const grant = devices.port.grants.grantFor(under(deviceId, moduleId), DEVICE_LINK_RIGHTS[kind])
        if (!grant) continue
        const own = grant.device
        if (own ? own.device.deviceId === deviceId && own.module?.moduleId === moduleId : this.exists(deviceId, moduleId)) { found = { deviceId, moduleId, grant }; break search }
      }
    }
    const what = parsed.moduleId === undefined ? `device ${parsed.deviceId}` : `module ${parsed.moduleId} of device ${parsed.deviceId}`
    // no token for it, but a client certificate: an X.509 device (or module) authenticates by it
    const cert = found ? undefined : devices.port.peerCertificates()
    if (cert) found = this.byCertificate(devices, cert, parsed.deviceId, parsed.moduleId, under(parsed.deviceId, parsed.moduleId))
    if (!found) {
      // a DeviceConnect policy for an identity that does not exist: not found, as Azure answers
      const policy = devices.port.grants.grantFor(under(parsed.deviceId, parsed.moduleId), DEVICE_LINK_RIGHTS[kind])
      if (policy && !policy.device) this.policyIdentity(parsed.deviceId, parsed.moduleId, policy)
      throw new AmqpError('amqp:unauthorized-access', `Unauthorized access to '${address}': put a token for ${what} on $cbs first.`)
    }
    // a token put earlier names the identity as it was then: it must still be registered, the same
    // generation, and its device enabled (a deleted module or a disabled device opens no new link)
    const own = found.grant.device
    if (own) this.checkStillValid(own, what)
    const identity = own ?? this.policyIdentity(found.deviceId, found.moduleId, found.grant)
    const session = this.session(conn, identity)
    this.linkSessions.set(link, session)
    session.attach(kind, link)
    return under(found.deviceId, found.moduleId)
  }

  private byCertificate(devices: ConnectionDevices, cert: X509Certificate[], deviceId: string, moduleId: string | undefined, address: string): { deviceId: string; moduleId: string | undefined; grant: Grant } {
    let identity: DeviceIdentity
    try {
      identity = this.edge.authenticator.authenticateX509(cert, deviceId, moduleId)
    } catch (e) {
      if (e instanceof DeviceAuthError) throw new AmqpError(e.failure === 'not-found' ? 'amqp:not-found' : 'amqp:unauthorized-access', e.message)
      throw e
    }
    const grant: Grant = { path: address.split('/').filter(Boolean), expiry: identity.expiry + CLOCK_SKEW_SECONDS, rights: ['DeviceConnect'], device: identity }
    devices.port.grants.add(grant)
    devices.port.certificateAccepted()
    return { deviceId, moduleId, grant }
  }

  private checkStillValid(identity: DeviceIdentity, what: string): void {
    const device = this.registry.get(identity.device.deviceId)
    const m = identity.module
    const module = m ? this.edge.authenticator.modules.get(m.deviceId, m.moduleId) : undefined
    if (!device || device.generationId !== identity.device.generationId || (m && (!module || module.generationId !== m.generationId))) {
      throw new AmqpError('amqp:not-found', `${what} is not registered (the token was put for an identity since deleted)`)
    }
    if (device.status === 'disabled') throw new AmqpError('amqp:unauthorized-access', `device ${device.deviceId} is disabled`)
  }

  private exists(deviceId: string, moduleId: string | undefined): boolean {
    return moduleId === undefined ? this.registry.get(deviceId) !== undefined : this.edge.authenticator.modules.get(deviceId, moduleId) !== undefined
  }

  /** A message on a device link; false when the link is not one. */
  message(receiver: rhea.Receiver, msg: rhea.Message, delivery: rhea.Delivery): boolean {
    const session = this.linkSessions.get(receiver)
    if (!session) return false
    session.message(receiver, msg, delivery)
    return true
  }

  /** A device link closed, from either side. */
  detached(link: rhea.link): void {
    const session = this.linkSessions.get(link)
    if (!session) return
    this.linkSessions.delete(link)
    session.detached(link)
  }

  /** Sessions whose device no grant covers any more (tokens expired, not renewed) end, as an MQTT connection does. */
  sweep(conn: rhea.Connection): void {
    const devices = this.byConnection.get(conn)
    if (!devices) return
    for (const session of [...devices.sessions.values()]) {
      const m = session.identity.module
      const address = m ? `/devices/${session.deviceId}/modules/${m.moduleId}` : `/devices/${session.deviceId}`
      if (!devices.port.grants.allows(address, 'DeviceConnect')) session.close(m ? 'the module\'s token expired' : 'the device\'s token expired')
    }
  }

  connectionClosed(conn: rhea.Connection): void {
    const devices = this.byConnection.get(conn)
    if (!devices) return
    for (const session of [...devices.sessions.values()]) session.close('connection lost')
    this.byConnection.delete(conn)
  }

  private devicesOf(conn: rhea.Connection): ConnectionDevices {
    const devices = this.byConnection.get(conn)
    if (!devices) throw new Error('a connection the AMQP server did not announce')
    return devices
  }

  private session(conn: rhea.Connection, identity: DeviceIdentity, fromToken = false): AmqpDeviceSession {
    const devices = this.devicesOf(conn)
    const key = identity.module ? moduleKey(identity.device.deviceId, identity.module.moduleId) : identity.device.deviceId
    const existing = devices.sessions.get(key)
    if (existing && existing.state !== 'closed') {
      if (fromToken) existing.renewed(identity)
      return existing
    }
    const session = new AmqpDeviceSession(this.edge, devices, identity)
    devices.sessions.set(key, session)
    session.open()
    return session
  }

  /** A device (or module) acting under a DeviceConnect policy token for the hub (or all devices): it must exist and its device be enabled. */
  private policyIdentity(deviceId: string, moduleId: string | undefined, grant: Grant): DeviceIdentity {
    const device = this.registry.get(deviceId)
    if (!device) throw new AmqpError('amqp:not-found', `device ${deviceId} is not registered`)
    const module = moduleId === undefined ? undefined : this.edge.authenticator.modules.get(deviceId, moduleId)
    if (moduleId !== undefined && !module) throw new AmqpError('amqp:not-found', `module ${moduleId} of device ${deviceId} is not registered`)
    if (device.status === 'disabled') throw new AmqpError('amqp:unauthorized-access', `device ${deviceId} is disabled`)
    return {
      device, ...(module ? { module } : {}), expiry: grant.expiry,
      authMethod: JSON.stringify({ scope: 'hub', type: 'sas', issuer: 'iothub', acceptingIpFilterRule: null }),
    }
  }
}
