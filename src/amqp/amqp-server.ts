// AMQP 1.0 over TLS (5671) with rhea in server mode: the plain AMQP header (IoT Hub service client)
// and SASL ANONYMOUS (Event Hubs client) on one port, claims-based security on `$cbs`, request/reply
// on `$management`, and links dispatched by address. Settlement is explicit (autoaccept off): a
// message is accepted only once it has been handled. Before rhea sees a byte, a connection passes the
// connection gate (handshake deadline, per-address bounds) and then the frame guard (frame size,
// bytes before a token); after that it is held to the deadlines and counts in amqp-limits.ts.
import type { AddressInfo } from 'node:net'
import tls from 'node:tls'
import rhea from 'rhea'
import { peerCertificateChain } from '../tls/peer-chain.js'
import type { Authenticator } from '../auth/authenticator.js'
import type { Right } from '../auth/policies.js'
import type { AccessNeed } from '../auth/roles.js'
import { BearerTokenError } from '../auth/bearer-tokens.js'
import { TokenError } from '../auth/sas-token.js'
import type { Logger } from '../log.js'
import { ConnectionGate, type GateTicket } from '../tls/connection-gate.js'
import { amqpLimits, type AmqpLimits } from './amqp-limits.js'
import { CbsAuthority, ConnectionGrants } from './cbs-auth.js'
import { AmqpError, type EventHubsEndpoint } from './event-hubs-endpoint.js'
import { AmqpFrameGuard, type AmqpByteSocket, type FrameViolation } from './frame-guard.js'
import type { WebSocketByteStream } from './websocket-stream.js'
import { ignoreLateSessionFrames } from './ended-session-frames.js'
import { limitIncomingTransfers } from './incoming-transfer-limits.js'
import { OutgoingBudget } from './outgoing-budget.js'
import { diagnosticWording, withRheaConsoleCaptured } from './rhea-console.js'
import { C2D_ADDRESS, FEEDBACK_ADDRESS, FILE_NOTIFICATIONS_ADDRESS, type ServiceLinks } from './service-links.js'
import type { AmqpDevices } from './amqp-devices.js'
import { deviceOfAudience, decodedAudience, parseDeviceAddress } from './device-addresses.js'
import { ReceiverCredit } from './receiver-credit.js'
import type { ListenerResumption } from '../tls/session-resumption.js'

interface ConnectionState {
  grants: ConnectionGrants
  /** links attached under a grant, and what they need: closed when no live grant covers them any more */
  granted: Map<rhea.link, { address: string; need: Right | AccessNeed }>
  /** our senders on `$cbs` / `$management`, by the client's target address (where replies go) */
  replySenders: Map<string, rhea.Sender>
  peer: string
  guard: AmqpFrameGuard
  budget: OutgoingBudget
  ticket: GateTicket
  isAuthenticated: boolean
  isDropped: boolean
  /** credit of the links the hub receives on, refilled as it settles */
  credits: WeakMap<rhea.Receiver, ReceiverCredit>
  openTimer: NodeJS.Timeout | undefined
  cbsTimer: NodeJS.Timeout | undefined
}

/**
 * Every entity a client may attach to besides `$cbs`, and the right its token needs (the rights
 * tests enumerate this table). `$management` is checked per request.
 */
export const AMQP_ENTITY_RIGHTS = {
  c2dSender: { right: 'ServiceConnect', role: 'cloudToDeviceMessages/send/action' },
  feedbackReceiver: { right: 'ServiceConnect', role: 'cloudToDeviceMessages/feedback/action' },
  fileNotificationReceiver: { right: 'ServiceConnect', role: 'fileUpload/notifications/action' },
  // the Event Hubs-compatible endpoint: shared access signatures only, as in Azure
  eventHubsPartitionReceiver: { right: 'ServiceConnect', role: 'sas-only' },
  management: { right: 'ServiceConnect', role: 'sas-only' },
} as const satisfies Record<string, AccessNeed>

/** Messages the hub takes on a link before it settles them: put-tokens and management requests are answered at once, C2D sends once stored. */
const CBS_CREDIT = 8
const MANAGEMENT_CREDIT = 8
const C2D_SEND_CREDIT = 100

/** Why the hub ended a connection itself. */
export type DropReason = FrameViolation | 'open-timeout' | 'cbs-timeout' | 'output-stalled' | 'internal-error' | 'transfer-without-credit' | 'deliveries-unsettled' | 'credential-revoked' | 'certificate-revoked'

/** rhea's view of a connection's sessions and their links, which its typings leave out. */
interface SessionMap { local_channel_map: Record<string, { links: Record<string, rhea.link> }> }

function linkCount(conn: rhea.Connection): number {
  let n = 0
  for (const session of Object.values((conn as unknown as SessionMap).local_channel_map)) n += Object.keys(session.links).length
  return n
}

export interface AmqpServerOptions {
  host: string
  port: number
  key: string
  cert: string
  /** session tickets and ids for returning clients */
  resumption?: ListenerResumption
  hostNames: string[]
  auth: Authenticator
  eventHubs: EventHubsEndpoint
  service: ServiceLinks
  devices: AmqpDevices
  log: Logger
  /** overrides of DEFAULT_AMQP_LIMITS */
  limits?: Partial<AmqpLimits>
}

/** The container id the peer announced in its open (clients name themselves: a diagnostic, not a credential). */
function idOfPeer(conn: rhea.Connection): string | undefined {
  const id = (conn as unknown as { remote?: { open?: { container_id?: unknown } } }).remote?.open?.container_id
  return typeof id === 'string' ? id.slice(0, 100) : undefined
}

export class AmqpServer {
  private readonly container = rhea.create_container({ id: 'hyperhub' })
  private readonly state = new WeakMap<rhea.Connection, ConnectionState>()
  private readonly cbs: CbsAuthority
  private readonly limits: AmqpLimits
  private readonly gate: ConnectionGate
  private server: tls.Server | undefined
  /** connections past their TLS handshake, closed on shutdown (the listener only stops once they are gone) */
  private readonly connections = new Set<rhea.Connection>()
  /** links whose tokens ran out are closed within a second */
  private readonly expiryTimer: NodeJS.Timeout

  constructor(private readonly o: AmqpServerOptions) {
    this.expiryTimer = setInterval(() => this.safely(undefined, () => this.closeExpiredLinks()), 1000)
    this.expiryTimer.unref()
    this.cbs = new CbsAuthority(o.auth, new Set(o.hostNames.map((h) => h.replace(/:\d+$/, '').toLowerCase())), o.eventHubs.entity)
    this.limits = amqpLimits(o.limits)
    this.gate = new ConnectionGate({
      ...this.limits,
      // debug: a flood of these must not flood the log
      onRefused: (address, reason) => o.log.debug('amqp connection refused', { address, reason }),
    })
    const c = this.container
    const on = (event: string, handle: (ctx: rhea.EventContext) => void) => c.on(event, (ctx: rhea.EventContext) => this.safely(ctx.connection, () => handle(ctx)))
    on('connection_open', (ctx) => clearTimeout(this.state.get(ctx.connection)?.openTimer))
    on('session_open', (ctx) => this.sessionOpened(ctx))
    on('receiver_open', (ctx) => this.attachOrRefuse(ctx.connection, ctx.receiver!, () => this.receiverOpened(ctx)))
    on('sender_open', (ctx) => this.attachOrRefuse(ctx.connection, ctx.sender!, () => this.senderOpened(ctx)))
    on('message', (ctx) => this.message(ctx))
    on('sendable', (ctx) => {
      o.eventHubs.sendable(ctx.sender!)
      o.service.pumpFeedback(ctx.sender!)
    })
    on('sender_close', (ctx) => {
      o.eventHubs.detached(ctx.sender!)
      o.service.detached(ctx.sender!)
      o.devices.detached(ctx.sender!)
    })
    on('receiver_close', (ctx) => o.devices.detached(ctx.receiver!))
    on('accepted', (ctx) => o.service.settled(ctx.delivery!, 'accepted'))
    on('rejected', (ctx) => o.service.settled(ctx.delivery!, 'rejected'))
    on('released', (ctx) => o.service.settled(ctx.delivery!, 'released'))
    on('modified', (ctx) => o.service.settled(ctx.delivery!, 'released'))
    on('connection_close', (ctx) => this.detachAll(ctx.connection))
    on('disconnected', (ctx) => this.detachAll(ctx.connection))
    // session and link errors nobody handled reach the container (connections have their own handlers)
    c.on('error', (e: Error) => o.log.warn('amqp error', { error: e }))
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      // a client certificate is asked for and checked by the hub when a device link attaches (X.509 devices)
      const server = this.gate.createServer({ key: this.o.key, cert: this.o.cert, requestCert: true, rejectUnauthorized: false, ...this.o.resumption?.serverOptions('amqp') },
        (socket, ticket) => this.accept(socket, ticket))
      this.o.resumption?.attach(server)
      this.server = server
      server.once('error', reject)
      server.listen({ host: this.o.host, port: this.o.port }, () => {
        server.off('error', reject)
        server.on('error', (e) => this.o.log.warn('amqp listener error', { error: e }))
        resolve((server.address() as AddressInfo).port)
      })
    })
  }

  close(): Promise<void> {
    clearInterval(this.expiryTimer)
    this.o.service.close()
    return new Promise((resolve) => {
      // a peer that never answers the close must not hold the hub
      const done = setTimeout(resolve, this.server ? 5000 : 1100)
      if (this.server) this.server.close(() => { clearTimeout(done); resolve() })
      else if (this.connections.size === 0) { clearTimeout(done); resolve() }
      this.gate.destroyHandshaking()
      for (const conn of this.connections) {
        if (conn.is_open()) conn.close()
        else this.state.get(conn)?.guard.destroy()
      }
      // give clients a moment to answer the close, then drop what is left
      setTimeout(() => {
        for (const conn of this.connections) this.state.get(conn)?.guard.destroy()
      }, 1000).unref()
    })
  }

  /**
   * An AMQP connection over WebSocket (the HTTPS server upgraded it, AMQPWSB10): the same engine and
   * bounds as on 5671. False when its address is over a bound (the caller closes it).
   */
  acceptWebSocket(stream: WebSocketByteStream): boolean {
    const ticket = this.gate.enter(stream.remoteAddress)
    if (!ticket) return false
    this.accept(stream, ticket)
    return true
  }

  /** A TLS handshake finished in time (or a WebSocket was upgraded): rhea gets the socket through a frame guard. */
  private accept(socket: AmqpByteSocket, ticket: GateTicket): void {
    const L = this.limits
    const peer = socket.remotePort === undefined ? `${socket.remoteAddress} (WebSocket)` : `${socket.remoteAddress}:${socket.remotePort}`
    socket.setNoDelay(true)
    const conn = this.container.create_connection({
      // credit is the hub's to give, as it settles (receiver-credit.ts)
      transport: 'tls', autoaccept: false, credit_window: 0, max_frame_size: L.maxFrameBytes, channel_max: L.maxSessionsPerConnection - 1,
    } as rhea.ConnectionOptions)
    const guard = new AmqpFrameGuard(socket, {
      ...L,
      onViolation: (violation) => this.drop(conn, violation),
      runRhea: (read) => {
        try {
          withRheaConsoleCaptured(this.o.log, { peer }, read)
        } catch (e) {
          this.failed(conn, e) // rhea catches what it throws while reading; this is for anything else
        }
      },
    })
    const budget = new OutgoingBudget(guard, {
      ...L,
      onStalled: () => this.drop(conn, 'output-stalled'),
      onError: (e) => this.failed(conn, e),
      onBackedUp: (heldBytes) => this.o.log.debug('amqp output waits for the peer', { peer, heldBytes }),
    })
    const s: ConnectionState = {
      grants: new ConnectionGrants(), granted: new Map(), replySenders: new Map(), peer, guard, budget, ticket, isAuthenticated: false, isDropped: false, credits: new WeakMap(),
      openTimer: setTimeout(() => { if (!conn.is_remote_open()) this.drop(conn, 'open-timeout') }, L.openTimeoutMs).unref(),
      cbsTimer: setTimeout(() => { if (!s.isAuthenticated) this.drop(conn, 'cbs-timeout') }, L.cbsTimeoutMs).unref(),
    }
    this.state.set(conn, s)
    this.connections.add(conn)
    this.o.devices.connected(conn, {
      transportKind: socket.remotePort === undefined ? 'amqpwss' : 'amqps', guard, budget, grants: s.grants,
      violation: (kind) => this.drop(conn, kind),
      peerCertificates: () => (socket instanceof tls.TLSSocket ? peerCertificateChain(socket) : 'peerCertificates' in socket ? (socket as WebSocketByteStream).peerCertificates() : undefined),
      certificateAccepted: () => this.authenticated(conn),
    })
    limitIncomingTransfers(conn, L.maxMessageBytes)
    ignoreLateSessionFrames(conn, (kind) => this.o.log.debug('amqp frame for an ended session dropped', { peer, kind }))
    // with handlers here rhea prints nothing itself (on a read error it would hex-dump its whole buffer)
    conn.on('protocol_error', (e: Error) => this.o.log.info('amqp protocol error', { peer, container: idOfPeer(conn), reason: diagnosticWording(e.message) }))
    conn.on('error', (e: Error) => this.o.log.warn('amqp connection error', { peer, error: e }))
    socket.once('close', () => this.closed(conn))
    conn.accept(guard)
  }

  /** The hub ends a connection: with an AMQP close when the peer opened one, else by dropping the socket. */
  private drop(conn: rhea.Connection, reason: DropReason): void {
    const s = this.state.get(conn)
    if (!s || s.isDropped) return
    s.isDropped = true
    this.o.log.info('amqp connection dropped', { peer: s.peer, reason })
    const error = this.dropError(reason)
    if (!error || !conn.is_open()) return s.guard.destroy()
    s.guard.discardInput() // what follows a broken frame is not AMQP; the socket goes after the grace period
    conn.close(error)
  }

  private dropError(reason: DropReason): rhea.AmqpError | undefined {
    const L = this.limits
    switch (reason) {
      case 'frame-too-large': return { condition: 'amqp:connection:framing-error', description: `frames may be at most ${L.maxFrameBytes} bytes (max-frame-size)` }
      case 'frame-too-small':
      case 'bad-protocol-header': return { condition: 'amqp:connection:framing-error', description: 'malformed frame' }
      case 'unauthenticated-input-over-bound': return { condition: 'amqp:resource-limit-exceeded', description: `at most ${L.maxUnauthenticatedBytes} bytes before a token is put on $cbs` }
      case 'cbs-timeout': return { condition: 'amqp:unauthorized-access', description: `no valid token was put on $cbs within ${L.cbsTimeoutMs / 1000} s` }
      case 'internal-error': return { condition: 'amqp:internal-error', description: 'internal error' }
      case 'transfer-without-credit': return { condition: 'amqp:link:transfer-limit-exceeded', description: 'a transfer arrived on a link the hub had given no credit' }
      case 'credential-revoked': return { condition: 'amqp:unauthorized-access', description: 'the shared access policy key that signed a token on this connection was revoked' }
      case 'certificate-revoked': return { condition: 'amqp:unauthorized-access', description: 'a device certificate on this connection no longer leads to a verified CA certificate of the hub' }
      case 'deliveries-unsettled': return { condition: 'amqp:resource-limit-exceeded', description: 'a session left nearly 2,048 deliveries of the hub unsettled' }
      // no AMQP open to answer, or a peer that does not read what we write
      case 'open-timeout':
      case 'output-stalled': return undefined
    }
  }

  /** Runs a handler: whatever it throws ends that connection, never the hub. */
  private safely(conn: rhea.Connection | undefined, handle: () => void): void {
    try {
      handle()
    } catch (e) {
      if (conn) this.failed(conn, e)
      else this.o.log.error('amqp handler failed', { error: e as Error })
    }
  }

  private failed(conn: rhea.Connection, e: unknown): void {
    this.o.log.error('amqp handler failed', { peer: this.state.get(conn)?.peer, error: e as Error })
    this.drop(conn, 'internal-error')
  }

  /** The peer put its first valid token: the unauthenticated bounds no longer apply. */
  private authenticated(conn: rhea.Connection): void {
    const s = this.state.get(conn)
    if (!s || s.isAuthenticated) return
    s.isAuthenticated = true
    clearTimeout(s.cbsTimer)
    s.guard.authenticated()
    s.ticket.authenticated()
    this.o.log.debug('amqp connection authenticated', { peer: s.peer, receivedBytes: s.guard.receivedBytes })
  }

  private sessionOpened(ctx: rhea.EventContext): void {
    const sessions = Object.keys((ctx.connection as unknown as SessionMap).local_channel_map).length
    if (sessions <= this.limits.maxSessionsPerConnection) return
    ctx.session!.close({ condition: 'amqp:resource-limit-exceeded', description: `at most ${this.limits.maxSessionsPerConnection} sessions per connection` })
  }

  private attachOrRefuse(conn: rhea.Connection, link: rhea.link, attach: () => void): void {
    try {
      if (linkCount(conn) > this.limits.maxLinksPerConnection) throw new AmqpError('amqp:resource-limit-exceeded', `at most ${this.limits.maxLinksPerConnection} links per connection`)
      attach()
    } catch (e) {
      const err = e instanceof AmqpError ? e : new AmqpError('amqp:internal-error', 'internal error')
      if (!(e instanceof AmqpError)) this.o.log.error('amqp attach failed', { error: e as Error })
      link.close({ condition: err.condition, description: err.message })
    }
  }

  private connState(conn: rhea.Connection): ConnectionState {
    const s = this.state.get(conn)
    if (!s) throw new Error('a connection this server did not accept')
    return s
  }

  /** The link may attach if a live grant covers it; it is then watched, and closed when its grants expire. */
  private authorize(conn: rhea.Connection, address: string, need: AccessNeed, link: rhea.link): void {
    const s = this.connState(conn)
    if (!s.grants.allows(address, need)) {
      throw new AmqpError('amqp:unauthorized-access', `Unauthorized access to '${address}': put a token with ${need.right}${need.role === 'sas-only' ? '' : ` (or a bearer token whose roles allow ${need.role})`} on $cbs first.`)
    }
    s.granted.set(link, { address, need })
  }

  /** A shared access policy changed: a connection holding a token that policy no longer signs is closed. */
  policiesChanged(): void {
    for (const conn of [...this.connections]) {
      const s = this.state.get(conn)
      if (!s || s.grants.stillHeld(this.o.auth)) continue
      this.drop(conn, 'credential-revoked')
    }
  }

  /** CA certificate `name` was deleted or no longer verified: a connection holding a device whose chain led to it, and no longer verifies, is closed. */
  certificateRevoked(name: string): void {
    for (const conn of [...this.connections]) {
      const s = this.state.get(conn)
      if (!s || s.grants.every((g) => g.device?.certificateIssuer !== name || this.o.auth.chainStillVerified(g.device))) continue
      this.drop(conn, 'certificate-revoked')
    }
  }

  /** As Azure does: a link whose token expired, and was not renewed on $cbs, is closed. */
  private closeExpiredLinks(now = Date.now() / 1000): void {
    for (const conn of this.connections) {
      const s = this.state.get(conn)
      if (!s) continue
      for (const [link, need] of s.granted) {
        if (!link.is_open()) { s.granted.delete(link); continue }
        if (s.grants.allows(need.address, need.need, now)) continue
        s.granted.delete(link)
        link.close({ condition: 'amqp:unauthorized-access', description: `the token for '${need.address}' expired; put a new one on $cbs before it does` })
      }
      this.o.devices.sweep(conn)
    }
  }

  /** The client attached a sender: we receive on its target address. */
  private receiverOpened(ctx: rhea.EventContext): void {
    const receiver = ctx.receiver!
    const address = receiver.target?.address ?? ''
    receiver.set_target({ address })
    const credit = (window: number) => {
      const c = new ReceiverCredit(receiver, window, () => this.drop(ctx.connection, 'transfer-without-credit'))
      this.connState(ctx.connection).credits.set(receiver, c)
      c.open()
    }
    if (address === '$cbs') return credit(CBS_CREDIT)
    if (address === '$management') return credit(MANAGEMENT_CREDIT)
    if (address === C2D_ADDRESS) {
      this.authorize(ctx.connection, address, AMQP_ENTITY_RIGHTS.c2dSender, receiver)
      return credit(C2D_SEND_CREDIT)
    }
    const device = parseDeviceAddress(address, true)
    if (device) return this.attachDeviceLink(ctx.connection, receiver, address, device)
    throw new AmqpError('amqp:not-found', `The messaging entity '${address}' could not be found.`)
  }

  /** A device's link: the devices authorise it; it is watched for its token's expiry like the others. */
  private attachDeviceLink(conn: rhea.Connection, link: rhea.link, address: string, device: NonNullable<ReturnType<typeof parseDeviceAddress>>): void {
    const granted = this.o.devices.attach(conn, link, address, device)
    // watched under the device (or module) it was granted for (the address may spell the id URL-encoded)
    this.connState(conn).granted.set(link, { address: granted, need: 'DeviceConnect' })
  }

  /** The client attached a receiver: we send from its source address. */
  private senderOpened(ctx: rhea.EventContext): void {
    const sender = ctx.sender!
    const address = sender.source?.address ?? ''
    sender.set_source(sender.source)
    if (address === '$cbs' || address === '$management') {
      this.connState(ctx.connection).replySenders.set(sender.target?.address || address, sender)
      return
    }
    if (address === FEEDBACK_ADDRESS || address === FILE_NOTIFICATIONS_ADDRESS) {
      this.authorize(ctx.connection, address, address === FEEDBACK_ADDRESS ? AMQP_ENTITY_RIGHTS.feedbackReceiver : AMQP_ENTITY_RIGHTS.fileNotificationReceiver, sender)
      // a hub with file upload turned off has no notification queue: that link stays open and quiet
      this.o.service.serviceBoundAttached(sender, this.connState(ctx.connection).budget, address)
      return
    }
    const partition = this.o.eventHubs.parseAddress(address)
    if (partition) {
      this.authorize(ctx.connection, address, AMQP_ENTITY_RIGHTS.eventHubsPartitionReceiver, sender)
      this.o.eventHubs.attach(sender, partition.group, partition.partition, this.connState(ctx.connection).budget)
      return
    }
    const device = parseDeviceAddress(address, false)
    if (device) return this.attachDeviceLink(ctx.connection, sender, address, device)
    throw new AmqpError('amqp:not-found', `The messaging entity '${address}' could not be found.`)
  }

  private reply(conn: rhea.Connection, request: rhea.Message, node: '$cbs' | '$management', status: number, description: string, body?: unknown): void {
    const senders = this.connState(conn).replySenders
    // Event Hubs replies to its receiver's target address; the IoT Hub client says "cbs" and listens on $cbs
    const sender = (request.reply_to && senders.get(String(request.reply_to))) || senders.get(node)
      || [...senders.values()].find((s) => s.source?.address === node)
    sender?.send({
      to: request.reply_to, correlation_id: request.message_id,
      application_properties: { 'status-code': status, 'status-description': description }, ...(body !== undefined ? { body } : {}),
    } as rhea.Message)
  }

  private message(ctx: rhea.EventContext): void {
    const msg = ctx.message!
    const receiver = ctx.receiver!
    if (this.o.devices.message(receiver, msg, ctx.delivery!)) return
    const credit = this.connState(ctx.connection).credits.get(receiver)
    if (!credit?.arrived()) return // no credit given: the connection is being dropped
    const node = receiver.target?.address
    if (node === C2D_ADDRESS) {
      if (!this.connState(ctx.connection).grants.allows(C2D_ADDRESS, AMQP_ENTITY_RIGHTS.c2dSender)) {
        ctx.delivery!.reject({ condition: 'amqp:unauthorized-access', description: 'no token with ServiceConnect (or a bearer token whose roles allow cloudToDeviceMessages/send/action)' })
        return credit.settled()
      }
      void this.o.service.c2d(msg, ctx.delivery!).finally(() => credit.settled())
      return
    }
    const props = (msg.application_properties ?? {}) as Record<string, unknown>
    // a bearer token's signature is checked asynchronously: its credit comes back when it is answered,
    // so one connection has at most CBS_CREDIT checks under way
    if (node === '$cbs' && props.operation === 'put-token' && typeof msg.body === 'string' && /^Bearer\s/i.test(msg.body)) {
      ctx.delivery!.accept()
      return this.putBearerToken(ctx.connection, msg, () => credit.settled())
    }
    // everything else is answered now
    credit.settled()
    if (node === '$cbs') {
      let status = 200, description = 'OK'
      try {
        if (props.operation !== 'put-token') throw new TokenError(`operation ${String(props.operation)} is not supported`, 'malformed')
        const audience = String(props.name)
        const device = deviceOfAudience(audience)
        const grant = device?.moduleId !== undefined
          ? this.cbs.verifyModule(String(msg.body), decodedAudience(audience)!, device.deviceId, device.moduleId)
          : device
            ? this.cbs.verifyDevice(String(msg.body), decodedAudience(audience)!, device.deviceId)
            : this.cbs.verify(String(msg.body), audience)
        this.connState(ctx.connection).grants.add(grant)
        this.authenticated(ctx.connection)
        this.o.devices.authenticated(ctx.connection, grant)
      } catch (e) {
        if (!(e instanceof TokenError)) throw e
        status = 401
        description = `Unauthorized: ${e.message}`
        this.o.log.info('amqp put-token refused', { reason: e.reason })
      }
      ctx.delivery!.accept()
      this.reply(ctx.connection, msg, '$cbs', status, description)
    } else if (node === '$management') {
      ctx.delivery!.accept()
      const entity = `/${this.o.eventHubs.entity}/$management`
      let allowed = this.connState(ctx.connection).grants.allows(entity, AMQP_ENTITY_RIGHTS.management)
      if (!allowed && typeof props.security_token === 'string') {
        try {
          const g = this.cbs.verify(props.security_token, `sb://${this.o.hostNames[0]}/${this.o.eventHubs.entity}`)
          allowed = g.rights.includes(AMQP_ENTITY_RIGHTS.management.right)
        } catch (e) {
          if (!(e instanceof TokenError)) throw e
        }
      }
      if (!allowed) return this.reply(ctx.connection, msg, '$management', 401, 'Unauthorized: no token with ServiceConnect')
      const r = this.o.eventHubs.management(props)
      this.reply(ctx.connection, msg, '$management', r.status, r.description, r.body)
    } else {
      ctx.delivery?.reject({ condition: 'amqp:not-found', description: 'no such node' })
    }
  }

  /** A bearer token on $cbs: its signature is checked asynchronously, then answered like a SAS put-token. */
  private putBearerToken(conn: rhea.Connection, msg: rhea.Message, answered: () => void): void {
    const refused = (e: unknown) => {
      if (!(e instanceof BearerTokenError) && !(e instanceof TokenError)) this.o.log.error('bearer token check failed', { error: e as Error })
      this.o.log.info('amqp put-token refused', { reason: 'bearer' })
      return [401, `Unauthorized: ${e instanceof BearerTokenError || e instanceof TokenError ? e.message : 'internal error'}`] as const
    }
    void this.cbs.verifyBearer(String(msg.body)).then((grant) => {
      if (!this.state.has(conn)) return
      try {
        this.connState(conn).grants.add(grant) // past the bound of tokens per connection: refused, as a SAS token is
      } catch (e) {
        return refused(e)
      }
      this.authenticated(conn)
      return [200, 'OK'] as const
    }, refused).then((answer) => {
      if (answer && this.state.has(conn) && conn.is_open()) this.reply(conn, msg, '$cbs', answer[0], answer[1])
    }).catch((e: unknown) => this.failed(conn, e)).finally(answered)
  }

  /** The socket closed, whoever closed it. */
  private closed(conn: rhea.Connection): void {
    const s = this.state.get(conn)
    this.connections.delete(conn)
    this.detachAll(conn)
    this.o.eventHubs.connectionClosed(conn)
    this.o.service.connectionClosed(conn)
    this.o.devices.connectionClosed(conn)
    if (!s) return
    clearTimeout(s.openTimer)
    clearTimeout(s.cbsTimer)
    s.ticket.release()
    s.budget.dispose()
    this.o.log.debug('amqp connection closed', { peer: s.peer, receivedBytes: s.guard.receivedBytes, peakOutgoingBytes: s.budget.peakBytes })
  }

  /** Our senders on a closing connection stop producing. */
  private detachAll(conn: rhea.Connection): void {
    for (const session of Object.values((conn as unknown as SessionMap).local_channel_map)) {
      for (const link of Object.values(session.links)) {
        if (!link.is_sender()) continue
        this.o.eventHubs.detached(link as rhea.Sender)
        this.o.service.detached(link as rhea.Sender)
      }
    }
  }
}
