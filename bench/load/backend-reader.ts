// The back end under test: reads every message the devices send and times its arrival against the
// send timestamp in the first 8 payload bytes. Against the hub it reads the built-in endpoint's
// WebSocket stream; against a plain broker it subscribes to every device's topic at QoS 1.
import WebSocket from 'ws'
import { nowMicros, Histogram } from './histogram.js'
import { connectPacket, PacketReader, pubackPacket, PUBLISH, SUBACK, subscribePacket, CONNACK } from './mqtt-wire.js'
import { openPipe, type Target } from './transport.js'

export type ReaderConfig =
  | { kind: 'hub-stream'; httpsPort: number; ca: string; token: string }
  | { kind: 'mqtt-subscriber'; target: Target; filter: string; username?: string; password?: string; clientId: string }

/** Send timestamps and latencies of everything received, in growable typed arrays. */
class Arrivals {
  sent = new Float64Array(1 << 20)
  latency = new Float64Array(1 << 20)
  count = 0

  add(sentUs: number, nowUs: number): void {
    if (this.count === this.sent.length) {
      const grow = (a: Float64Array) => { const b = new Float64Array(a.length * 2); b.set(a); return b }
      this.sent = grow(this.sent)
      this.latency = grow(this.latency)
    }
    this.sent[this.count] = sentUs
    this.latency[this.count++] = nowUs - sentUs
  }
}

export interface ReaderStats {
  received: number
  /** sent inside the window and received */
  inWindow: number
  latency: number[]
}

export async function startReader(cfg: ReaderConfig): Promise<{ stop(windowStartUs: number, windowEndUs: number): Promise<ReaderStats>; received(): number }> {
  const arrivals = new Arrivals()
  let stop: () => void
  if (cfg.kind === 'hub-stream') {
    const ws = new WebSocket(`wss://localhost:${cfg.httpsPort}/messages/events/stream?from=latest`, { ca: cfg.ca, headers: { Authorization: cfg.token }, perMessageDeflate: false })
    ws.on('message', (data: Buffer) => {
      const now = nowMicros()
      for (const e of JSON.parse(data.toString()) as { body: string }[]) {
        arrivals.add(Buffer.from(e.body.slice(0, 12), 'base64').readDoubleLE(0), now)
      }
    })
    await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject) })
    stop = () => ws.close()
  } else {
    const reader = new PacketReader()
    let subacked: () => void = () => {}
    const ready = new Promise<void>((r) => { subacked = r })
    const pipe = await openPipe(cfg.target, (b) => {
      const now = nowMicros()
      let acks: Buffer[] | null = null
      reader.push(b, (p) => {
        if (p.type === PUBLISH) {
          arrivals.add(p.buf!.readDoubleLE(p.payloadAt!), now)
          if (p.value) (acks ??= []).push(pubackPacket(p.value))
        } else if (p.type === CONNACK) {
          pipe.write(subscribePacket(1, cfg.filter, 1))
        } else if (p.type === SUBACK) subacked()
      })
      if (acks) pipe.write(Buffer.concat(acks))
    }, () => {})
    pipe.write(connectPacket({ clientId: cfg.clientId, username: cfg.username, password: cfg.password, keepalive: 300, clean: true }))
    await ready
    stop = () => pipe.end()
  }
  return {
    received: () => arrivals.count,
    async stop(windowStartUs, windowEndUs) {
      stop()
      const hist = new Histogram()
      let inWindow = 0
      for (let i = 0; i < arrivals.count; i++) {
        const s = arrivals.sent[i]!
        if (s >= windowStartUs && s <= windowEndUs) { inWindow++; hist.record(arrivals.latency[i]!) }
      }
      return { received: arrivals.count, inWindow, latency: Array.from(hist.counts) }
    },
  }
}
