// The byte pipe under an MQTT connection: a TLS or TCP socket, or a WebSocket. The protocol code
// does not care which.
import type { Socket } from 'node:net'

export interface MqttTransport {
  readonly kind: 'tls' | 'tcp' | 'wss'
  readonly remoteAddress: string
  write(bytes: Buffer): void
  cork(): void
  uncork(): void
  /** Stop / restart reading (flow control while too many messages wait for their commit). */
  pause(): void
  resume(): void
  /** Close after what was written has gone out. */
  end(): void
}

export function socketTransport(socket: Socket, kind: 'tls' | 'tcp'): MqttTransport {
  return {
    kind,
    remoteAddress: socket.remoteAddress ?? '',
    write: (b) => { if (!socket.destroyed) socket.write(b) },
    cork: () => socket.cork(),
    uncork: () => socket.uncork(),
    pause: () => socket.pause(),
    resume: () => socket.resume(),
    end: () => {
      if (socket.destroyed) return
      socket.end()
      // a peer that never reads must not hold the socket open
      setTimeout(() => socket.destroy(), 2000).unref()
    },
  }
}
