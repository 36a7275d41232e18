// The HTTPS port's TLS, in front of uWebSockets.js. This uWS build cannot ask a client for a
// certificate without refusing self-signed ones, nor show one to JavaScript; X.509 devices over
// HTTPS, MQTT/WSS and AMQP/WSS need both. So node:tls terminates TLS here (any certificate or none is
// taken; the hub checks it where it authenticates), and the plaintext goes to uWS on loopback,
// preceded by a PROXY v2 header whose source address is a random 128-bit token naming this
// connection. uWS handlers turn the token back into the peer's address and certificate chain; a
// connection to the loopback port without a live token is refused there.
import { randomBytes, type X509Certificate } from 'node:crypto'
import net from 'node:net'
import type tls from 'node:tls'
import { ConnectionGate } from './connection-gate.js'
import { peerCertificateChain } from './peer-chain.js'
import type { SessionResumption } from './session-resumption.js'

export interface FrontPeer {
  /** the client's address, as a socket on the port would show it */
  address: string
  /** its certificate chain, leaf first, or undefined when it sent none */
  certificates(): X509Certificate[] | undefined
}

/** PROXY protocol v2: signature, version 2 / PROXY, TCP over IPv6, 36 address bytes. */
const PROXY_V2_PREFIX = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x21, 0x00, 36])

function proxyHeader(token: Buffer): Buffer {
  const ports = Buffer.alloc(4)
  return Buffer.concat([PROXY_V2_PREFIX, token, Buffer.alloc(16), ports])
}

export interface HttpsFrontOptions {
  key: string
  cert: string
  handshakeTimeoutMs: number
  /** the loopback port uWS listens on (known once it listens) */
  backendPort: () => number
  /** session tickets and ids for returning clients (session-resumption.ts) */
  resumption?: SessionResumption
}

export class HttpsFront {
  readonly server: tls.Server
  private readonly gate: ConnectionGate
  private readonly peers = new Map<string, FrontPeer>()
  private readonly sockets = new Set<net.Socket>()

  constructor(o: HttpsFrontOptions) {
    // per-address bounds are the edge's and the AMQP gate's, as before; this gate keeps the handshake deadline
    this.gate = new ConnectionGate({ handshakeTimeoutMs: o.handshakeTimeoutMs, maxUnauthenticatedPerAddress: Infinity, maxConnectionsPerAddress: Infinity })
    this.server = this.gate.createServer({ key: o.key, cert: o.cert, requestCert: true, rejectUnauthorized: false, ...o.resumption?.serverOptions('https') }, (client, ticket) => {
      ticket.authenticated()
      const token = randomBytes(16)
      const id = token.toString('hex')
      let chain: X509Certificate[] | undefined | null = null
      this.peers.set(id, {
        address: client.remoteAddress ?? '',
        certificates: () => (chain === null ? (chain = peerCertificateChain(client)) : chain),
      })
      const backend = net.connect({ host: '127.0.0.1', port: o.backendPort() })
      backend.setNoDelay(true)
      client.setNoDelay(true)
      this.sockets.add(client)
      const end = () => {
        this.peers.delete(id)
        this.sockets.delete(client)
        ticket.release()
        client.destroy()
        backend.destroy()
      }
      client.on('error', end).on('close', end)
      backend.on('error', end).on('close', end)
      backend.write(proxyHeader(token))
      // pipe() pauses the side whose destination is full: neither direction buffers without bound
      client.pipe(backend)
      backend.pipe(client)
    })
    o.resumption?.attach(this.server)
  }

  /** The peer a PROXY v2 source address (what uWS's getProxiedRemoteAddress gives) names, if it is live. */
  peerOf(proxied: ArrayBuffer): FrontPeer | undefined {
    if (proxied.byteLength !== 16) return undefined
    return this.peers.get(Buffer.from(proxied).toString('hex'))
  }

  get connections(): number { return this.peers.size }

  listen(port: number, host: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(port, host, () => {
        this.server.off('error', reject)
        resolve((this.server.address() as net.AddressInfo).port)
      })
    })
  }

  close(): void {
    this.server.close()
    this.gate.destroyHandshaking()
    for (const s of this.sockets) s.destroy()
  }
}
