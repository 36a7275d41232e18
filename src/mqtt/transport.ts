// The byte pipe under an MQTT connection: a TLS or TCP socket, or a WebSocket. The protocol code
// does not care which, except that a WebSocket cannot stop reading (uWebSockets.js has no pause
// for one), so the connection bounds what such a client sends while it should be waiting.
import { peerCertificateChain } from '../tls/peer-chain.js'
import type { Socket } from 'node:net'
import type { X509Certificate } from 'node:crypto'
import type { TLSSocket } from 'node:tls'

export interface MqttTransport {
  readonly kind: 'tls' | 'tcp' | 'wss'
  readonly remoteAddress: string
  readonly remotePort?: number
  /** Whether pause() really stops reading. */
  readonly pausable: boolean
  /** Bytes written and not yet taken by the network. */
  readonly bufferedBytes: number
  write(bytes: Buffer): void
  cork(): void
  uncork(): void
  /** Stop / restart reading (flow control). */
  pause(): void
  resume(): void
  /** `listener` runs whenever what was buffered for writing has gone out (or mostly). */
  onDrain(listener: () => void): void
  /** Close after what was written has gone out. */
  end(): void
  /** The client certificate the TLS handshake carried (X.509 devices), if any. */
  /** the client's certificate chain, leaf first (TLS listeners ask every client for one) */
  peerCertificates?(): X509Certificate[] | undefined
}

/** A peer that does not read what the hub sends cannot hold a closing socket open longer than this. */
const END_GRACE_MS = 2000

export function socketTransport(socket: Socket, kind: 'tls' | 'tcp'): MqttTransport {
  return {
    kind,
    remoteAddress: socket.remoteAddress ?? '',
    remotePort: socket.remotePort,
    pausable: true,
    get bufferedBytes() { return socket.writableLength },
    write: (b) => { if (!socket.destroyed) socket.write(b) },
    cork: () => socket.cork(),
    uncork: () => socket.uncork(),
    pause: () => socket.pause(),
    resume: () => socket.resume(),
    onDrain: (listener) => { socket.on('drain', listener) },
    end: () => {
      if (socket.destroyed) return
      socket.end()
      setTimeout(() => socket.destroy(), END_GRACE_MS).unref()
    },
    ...(kind === 'tls' ? { peerCertificates: () => peerCertificateChain(socket as TLSSocket) } : {}),
  }
}
