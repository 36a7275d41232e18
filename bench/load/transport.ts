// How the generator reaches the server: plain TCP, TLS, or MQTT over WebSocket.
import net from 'node:net'
import tls from 'node:tls'
import WebSocket from 'ws'

export type TransportKind = 'tcp' | 'tls' | 'wss'

export interface Target {
  host: string
  port: number
  transport: TransportKind
  /** PEM for tls/wss */
  ca?: string
  /** round-robin local addresses, for more ephemeral ports in storms */
  sourceAddresses?: string[]
}

export interface Pipe {
  write(b: Buffer): void
  cork(): void
  uncork(): void
  end(): void
  destroy(): void
}

let nextSource = 0

export function openPipe(t: Target, onData: (b: Buffer) => void, onClose: () => void): Promise<Pipe> {
  const localAddress = t.sourceAddresses?.length ? t.sourceAddresses[nextSource++ % t.sourceAddresses.length] : undefined
  return new Promise((resolve, reject) => {
    if (t.transport === 'wss') {
      const ws = new WebSocket(`wss://localhost:${t.port}/$iothub/websocket`, 'mqtt', { ca: t.ca, localAddress, perMessageDeflate: false })
      ws.binaryType = 'nodebuffer'
      ws.on('message', (d: Buffer) => onData(d))
      ws.once('close', onClose)
      ws.once('error', (e) => reject(e))
      ws.once('open', () => resolve({
        write: (b) => ws.send(b),
        cork: () => {},
        uncork: () => {},
        end: () => ws.close(),
        destroy: () => ws.terminate(),
      }))
      return
    }
    const socket = t.transport === 'tls'
      ? tls.connect({ host: t.host, port: t.port, ca: t.ca, servername: 'localhost', ...(localAddress ? { localAddress } : {}) })
      : net.connect({ host: t.host, port: t.port, ...(localAddress ? { localAddress } : {}) })
    socket.setNoDelay(true)
    socket.on('data', onData)
    socket.once('close', onClose)
    socket.once('error', reject)
    socket.once(t.transport === 'tls' ? 'secureConnect' : 'connect', () => {
      socket.removeListener('error', reject)
      socket.on('error', () => {})
      resolve({ write: (b) => socket.write(b), cork: () => socket.cork(), uncork: () => socket.uncork(), end: () => socket.end(), destroy: () => socket.destroy() })
    })
  })
}
