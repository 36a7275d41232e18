// Connection storm: open C connections as fast as a bounded number of concurrent connects allows,
// time each CONNACK, hold them idle while the server's memory is sampled, prove they are alive with
// a PINGREQ each, then disconnect.
import { Histogram, nowMicros } from './histogram.js'
import { CONNACK, connectPacket, DISCONNECT, PacketReader, PINGREQ, PINGRESP } from './mqtt-wire.js'
import { openPipe, type Pipe, type Target } from './transport.js'
import type { DeviceCredentials } from './publisher.js'

export interface StormConfig {
  target: Target
  devices: DeviceCredentials[]
  concurrency: number
  /** held idle this long after the last CONNACK (the orchestrator samples memory meanwhile) */
  holdMs: number
}

export interface StormStats {
  connected: number
  failures: number
  seconds: number
  latency: number[]
  alive: number
}

export async function runStorm(cfg: StormConfig, go: () => Promise<void> = async () => {}): Promise<StormStats> {
  await go()
  const hist = new Histogram()
  const pipes: { pipe: Pipe; pong: () => void; ponged: Promise<void> }[] = []
  let failures = 0
  let next = 0
  const t0 = Date.now()
  await Promise.all(Array.from({ length: Math.min(cfg.concurrency, cfg.devices.length) }, async () => {
    while (next < cfg.devices.length) {
      const d = cfg.devices[next++]!
      const reader = new PacketReader()
      let onConnack: (rc: number) => void = () => {}
      const connacked = new Promise<number>((r) => { onConnack = r })
      let pong = () => {}
      const ponged = new Promise<void>((r) => { pong = r })
      const start = nowMicros()
      try {
        const pipe = await openPipe(cfg.target, (b) => reader.push(b, (p) => {
          if (p.type === CONNACK) onConnack(p.value)
          else if (p.type === PINGRESP) pong()
        }), () => onConnack(-1))
        pipe.write(connectPacket({ clientId: d.clientId, username: d.username, password: d.password, keepalive: 600, clean: true }))
        const rc = await Promise.race([connacked, new Promise<number>((r) => setTimeout(() => r(-2), 30_000).unref())])
        if (rc !== 0) { failures++; pipe.destroy(); continue }
        hist.record(nowMicros() - start)
        pipes.push({ pipe, pong, ponged })
      } catch {
        failures++
      }
    }
  }))
  const seconds = (Date.now() - t0) / 1000
  process.send?.({ type: 'connected' })
  await new Promise((r) => setTimeout(r, cfg.holdMs))
  for (const p of pipes) p.pipe.write(PINGREQ)
  let alive = 0
  await Promise.race([
    Promise.all(pipes.map((p) => p.ponged.then(() => { alive++ }))),
    new Promise((r) => setTimeout(r, 15_000)),
  ])
  for (const p of pipes) { p.pipe.write(DISCONNECT); p.pipe.end() }
  return { connected: pipes.length, failures, seconds, latency: Array.from(hist.counts), alive }
}
