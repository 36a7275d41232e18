// AMQP 1.0 over TLS (5671) with rhea in server mode: the plain AMQP header (IoT Hub service client)
// and SASL ANONYMOUS (Event Hubs client) on one port, claims-based security on `$cbs`, request/reply
// on `$management`, and links dispatched by address. Settlement is explicit (autoaccept off): a
// message is accepted only once it has been handled.
import type { AddressInfo, Server } from 'node:net'
import rhea from 'rhea'
import type { Authenticator } from '../auth/authenticator.js'
import type { Right } from '../auth/policies.js'
import { TokenError } from '../auth/sas-token.js'
import type { Logger } from '../log.js'
import { CbsAuthority, ConnectionGrants } from './cbs-auth.js'
import { AmqpError, type EventHubsEndpoint } from './event-hubs-endpoint.js'
import { C2D_ADDRESS, FEEDBACK_ADDRESS, FILE_NOTIFICATIONS_ADDRESS, type ServiceLinks } from './service-links.js'

interface ConnectionState {
  grants: ConnectionGrants
  /** our senders on `$cbs` / `$management`, by the client's target address (where replies go) */
  replySenders: Map<string, rhea.Sender>
}

export interface AmqpServerOptions {
  host: string
  port: number
  key: string
  cert: string
  hostNames: string[]
  auth: Authenticator
  eventHubs: EventHubsEndpoint
  service: ServiceLinks
  log: Logger
}

export class AmqpServer {
  private readonly container = rhea.create_container({ id: 'hyperhub' })
  private readonly state = new WeakMap<rhea.Connection, ConnectionState>()
  private readonly cbs: CbsAuthority
  private server: Server | undefined
  /** open connections, closed on shutdown (the listener only stops once they are gone) */
  private readonly connections = new Set<rhea.Connection>()

  constructor(private readonly o: AmqpServerOptions) {
    this.cbs = new CbsAuthority(o.auth, new Set(o.hostNames.map((h) => h.replace(/:\d+$/, '').toLowerCase())))
    const c = this.container
    c.on('connection_open', (ctx) => {
      this.connections.add(ctx.connection)
      this.state.set(ctx.connection, { grants: new ConnectionGrants(), replySenders: new Map() })
    })
    c.on('receiver_open', (ctx) => this.guard(ctx.receiver!, () => this.receiverOpened(ctx)))
    c.on('sender_open', (ctx) => this.guard(ctx.sender!, () => this.senderOpened(ctx)))
    c.on('message', (ctx) => this.message(ctx))
    c.on('sendable', (ctx) => {
      o.eventHubs.sendable(ctx.sender!)
      o.service.pumpFeedback(ctx.sender!)
    })
    c.on('sender_close', (ctx) => {
      o.eventHubs.detached(ctx.sender!)
      o.service.detached(ctx.sender!)
    })
    c.on('accepted', (ctx) => o.service.settled(ctx.delivery!, 'accepted'))
    c.on('rejected', (ctx) => o.service.settled(ctx.delivery!, 'rejected'))
    c.on('released', (ctx) => o.service.settled(ctx.delivery!, 'released'))
    c.on('modified', (ctx) => o.service.settled(ctx.delivery!, 'released'))
    c.on('connection_close', (ctx) => this.dropped(ctx.connection))
    c.on('disconnected', (ctx) => this.dropped(ctx.connection))
    c.on('error', (e: Error) => o.log.warn('amqp error', { error: e }))
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      const server = this.container.listen({ host: this.o.host, port: this.o.port, transport: 'tls', key: this.o.key, cert: this.o.cert, autoaccept: false } as never) as unknown as Server
      this.server = server
      server.once('error', reject)
      server.once('listening', () => {
        server.off('error', reject)
        server.on('error', (e) => this.o.log.warn('amqp listener error', { error: e }))
        resolve((server.address() as AddressInfo).port)
      })
      server.on('tlsClientError', () => {}) // a failed handshake concerns only that client
    })
  }

  close(): Promise<void> {
    this.o.service.close()
    return new Promise((resolve) => {
      if (!this.server) return resolve()
      const done = setTimeout(resolve, 5000) // a peer that never answers the close must not hold the hub
      this.server.close(() => { clearTimeout(done); resolve() })
      for (const conn of this.connections) conn.close()
      // give clients a moment to answer the close, then drop what is left
      setTimeout(() => {
        for (const conn of this.connections) (conn as unknown as { socket?: { destroy(): void } }).socket?.destroy()
      }, 1000).unref()
    })
  }

  private guard(link: rhea.link, attach: () => void): void {
    try {
      attach()
    } catch (e) {
      const err = e instanceof AmqpError ? e : new AmqpError('amqp:internal-error', 'internal error')
      if (!(e instanceof AmqpError)) this.o.log.error('amqp attach failed', { error: e as Error })
      link.close({ condition: err.condition, description: err.message })
    }
  }

  private connState(conn: rhea.Connection): ConnectionState {
    let s = this.state.get(conn)
    if (!s) this.state.set(conn, (s = { grants: new ConnectionGrants(), replySenders: new Map() }))
    return s
  }

  private authorize(conn: rhea.Connection, address: string, right: Right): void {
    if (!this.connState(conn).grants.allows(address, right)) throw new AmqpError('amqp:unauthorized-access', `Unauthorized access to '${address}': put a token with ${right} on $cbs first.`)
  }

  /** The client attached a sender: we receive on its target address. */
  private receiverOpened(ctx: rhea.EventContext): void {
    const receiver = ctx.receiver!
    const address = receiver.target?.address ?? ''
    receiver.set_target({ address })
    if (address === '$cbs' || address === '$management') return
    if (address === C2D_ADDRESS) return this.authorize(ctx.connection, address, 'ServiceConnect')
    throw new AmqpError('amqp:not-found', `The messaging entity '${address}' could not be found.`)
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
      this.authorize(ctx.connection, address, 'ServiceConnect')
      // file upload does not exist yet: its notification link stays open and quiet
      if (address === FEEDBACK_ADDRESS) this.o.service.feedbackAttached(sender)
      return
    }
    const partition = this.o.eventHubs.parseAddress(address)
    if (partition) {
      this.authorize(ctx.connection, address, 'ServiceConnect')
      this.o.eventHubs.attach(sender, partition.group, partition.partition)
      return
    }
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
    const node = ctx.receiver?.target?.address
    const props = (msg.application_properties ?? {}) as Record<string, unknown>
    if (node === '$cbs') {
      let status = 200, description = 'OK'
      try {
        if (props.operation !== 'put-token') throw new TokenError(`operation ${String(props.operation)} is not supported`, 'malformed')
        this.connState(ctx.connection).grants.add(this.cbs.verify(String(msg.body), String(props.name)))
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
      let allowed = this.connState(ctx.connection).grants.allows(entity, 'ServiceConnect')
      if (!allowed && typeof props.security_token === 'string') {
        try {
          const g = this.cbs.verify(props.security_token, `sb://${this.o.hostNames[0]}/${this.o.eventHubs.entity}`)
          allowed = g.rights.includes('ServiceConnect')
        } catch (e) {
          if (!(e instanceof TokenError)) throw e
        }
      }
      if (!allowed) return this.reply(ctx.connection, msg, '$management', 401, 'Unauthorized: no token with ServiceConnect')
      const r = this.o.eventHubs.management(props)
      this.reply(ctx.connection, msg, '$management', r.status, r.description, r.body)
    } else if (node === C2D_ADDRESS) {
      if (!this.connState(ctx.connection).grants.allows(C2D_ADDRESS, 'ServiceConnect')) {
        ctx.delivery!.reject({ condition: 'amqp:unauthorized-access', description: 'no token with ServiceConnect' })
        return
      }
      void this.o.service.c2d(msg, ctx.delivery!)
    } else {
      ctx.delivery?.reject({ condition: 'amqp:not-found', description: 'no such node' })
    }
  }

  private dropped(conn: rhea.Connection): void {
    this.connections.delete(conn)
    const c = conn as unknown as { local_channel_map?: Record<string, { links?: Record<string, rhea.link> }> }
    for (const session of Object.values(c.local_channel_map ?? {})) {
      for (const link of Object.values(session.links ?? {})) {
        if (!link.is_sender()) continue
        this.o.eventHubs.detached(link as rhea.Sender)
        this.o.service.detached(link as rhea.Sender)
      }
    }
  }
}
