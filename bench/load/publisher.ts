// Simulated devices publishing telemetry: connect them all, then publish at full speed with a window
// of in-flight PUBLISHes (QoS 1), flow-controlled by PINGREQ markers (QoS 0: a PINGRESP proves the
// server processed everything before it), or at a fixed rate. Every loop is bounded by the window.
import { Histogram, nowMicros } from './histogram.js'
import { CONNACK, connectPacket, DISCONNECT, PacketReader, PINGREQ, PINGRESP, PUBACK, PublishTemplate } from './mqtt-wire.js'
import { openPipe, type Pipe, type Target } from './transport.js'

export interface DeviceCredentials { clientId: string; username?: string; password?: string; topic: string }

export interface PublishConfig {
  target: Target
  devices: DeviceCredentials[]
  qos: 0 | 1
  /** QoS 1: PUBLISHes in flight per device */
  window: number
  payloadBytes: number
  /** messages per second per device; 0 = as fast as acknowledgements allow */
  rate: number
  warmupMs: number
  durationMs: number
  connectConcurrency: number
  /** QoS 0: messages per PINGREQ marker, and unconfirmed messages allowed per device */
  qos0Batch: number
  qos0Window: number
  drainMs: number
}

export interface PublishStats {
  devices: number
  connected: number
  connectFailures: number
  connectSeconds: number
  /** acknowledged (QoS 1) or confirmed (QoS 0) inside the window */
  accepted: number
  sent: number
  windowSeconds: number
  unackedAtEnd: number
  disconnects: number
  latency: number[]
  /** every message written, warm-up and drain included (loss = this − delivered) */
  sentTotal: number
  /** the measurement window on the monotonic clock, µs */
  windowStartUs: number
  windowEndUs: number
}

interface Device {
  creds: DeviceCredentials
  pipe?: Pipe
  template: PublishTemplate
  nextId: number
  inFlight: number
  sentAt: Float64Array
  tokens: number
  closed: boolean
  /** messages to send once the current read is processed: one write per read, not per ack */
  refill: number
}

export async function connectAll(cfg: PublishConfig, onPacket: (d: Device, type: number, value: number) => void, onChunkEnd: (d: Device) => void): Promise<{ devices: Device[]; failures: number; seconds: number }> {
  const devices: Device[] = cfg.devices.map((creds) => ({
    creds, template: new PublishTemplate(creds.topic, cfg.payloadBytes, cfg.qos), nextId: 1, inFlight: 0,
    sentAt: new Float64Array(65536), tokens: 0, closed: false, refill: 0,
  }))
  let failures = 0
  let next = 0
  const t0 = Date.now()
  const connectOne = async (d: Device) => {
    const reader = new PacketReader()
    let connack: (rc: number) => void = () => {}
    const acked = new Promise<number>((resolve) => { connack = resolve })
    try {
      d.pipe = await openPipe(cfg.target, (b) => {
        reader.push(b, (p) => (p.type === CONNACK ? connack(p.value) : onPacket(d, p.type, p.value)))
        onChunkEnd(d)
      }, () => {
        d.closed = true
        connack(-1)
      })
      d.pipe.write(connectPacket({ clientId: d.creds.clientId, username: d.creds.username, password: d.creds.password, keepalive: 300, clean: true }))
      const rc = await Promise.race([acked, new Promise<number>((r) => setTimeout(() => r(-2), 30_000).unref())])
      if (rc !== 0) throw new Error(`CONNACK ${rc}`)
    } catch (e) {
      if (failures++ === 0) console.error(`connect failed: ${(e as Error).message}`)
      d.closed = true
      d.pipe?.destroy()
    }
  }
  await Promise.all(Array.from({ length: Math.min(cfg.connectConcurrency, devices.length) }, async () => {
    while (next < devices.length) await connectOne(devices[next++]!)
  }))
  return { devices, failures, seconds: (Date.now() - t0) / 1000 }
}

/** Connects, waits for `go` (so several generator processes start together), publishes, drains. */
export async function runPublishers(cfg: PublishConfig, go: () => Promise<void> = async () => {}): Promise<PublishStats> {
  const hist = new Histogram()
  let running = false
  let windowOpen = false
  let accepted = 0, sent = 0, sentTotal = 0, disconnects = 0
  const buf = Buffer.allocUnsafe(1024 * 1024)

  const send = (d: Device, count: number) => {
    if (!d.pipe || d.closed || count <= 0) return
    const size = d.template.bytes.length
    let at = 0
    const now = nowMicros()
    for (let i = 0; i < count; i++) {
      if (at + size + 2 > buf.length) { d.pipe.write(Buffer.from(buf.subarray(0, at))); at = 0 }
      const id = d.nextId
      d.nextId = d.nextId === 65535 ? 1 : d.nextId + 1
      at = d.template.writeInto(buf, at, id, now)
      if (cfg.qos === 1) { d.sentAt[id] = now; d.inFlight++ }
      else if (++d.inFlight % cfg.qos0Batch === 0) { PINGREQ.copy(buf, at); at += 2 }
      if (windowOpen) sent++
      sentTotal++
    }
    d.pipe.write(Buffer.from(buf.subarray(0, at)))
  }

  const onPacket = (d: Device, type: number, value: number) => {
    if (type === PUBACK) {
      d.inFlight--
      if (windowOpen) {
        accepted++
        hist.record(nowMicros() - d.sentAt[value]!)
      }
      if (running && cfg.rate === 0) d.refill++
    } else if (type === PINGRESP && cfg.qos === 0) {
      d.inFlight -= cfg.qos0Batch
      if (windowOpen) accepted += cfg.qos0Batch
      if (running && cfg.rate === 0) d.refill += cfg.qos0Batch
    }
  }
  const onChunkEnd = (d: Device) => {
    if (d.refill > 0) {
      const n = d.refill
      d.refill = 0
      send(d, n)
    }
  }

  const { devices, failures, seconds } = await connectAll(cfg, onPacket, onChunkEnd)
  const live = devices.filter((d) => !d.closed)
  await go()
  running = true
  let timer: NodeJS.Timeout | undefined
  if (cfg.rate === 0) {
    for (const d of live) send(d, cfg.qos === 1 ? cfg.window : cfg.qos0Window)
  } else {
    let last = Date.now()
    timer = setInterval(() => {
      const now = Date.now()
      const dt = (now - last) / 1000
      last = now
      for (const d of live) {
        d.tokens += cfg.rate * dt
        const room = cfg.qos === 1 ? cfg.window - d.inFlight : cfg.qos0Window - d.inFlight
        const n = Math.min(Math.floor(d.tokens), room)
        if (n > 0) { d.tokens -= n; send(d, n) }
        if (d.tokens > cfg.rate) d.tokens = cfg.rate // no bursts after a stall
      }
    }, 5)
  }
  await sleep(cfg.warmupMs)
  windowOpen = true
  const w0 = Date.now()
  const windowStartUs = nowMicros()
  await sleep(cfg.durationMs)
  windowOpen = false
  const windowEndUs = nowMicros()
  const windowSeconds = (Date.now() - w0) / 1000
  running = false
  if (timer) clearInterval(timer)
  // drain: wait (bounded) for what is still in flight
  const drainUntil = Date.now() + cfg.drainMs
  while (Date.now() < drainUntil && live.some((d) => !d.closed && d.inFlight > 0 && (cfg.qos === 1 || d.inFlight >= cfg.qos0Batch))) await sleep(20)
  const unacked = live.reduce((s, d) => s + Math.max(0, d.inFlight), 0)
  for (const d of live) {
    if (d.closed) disconnects++
    else { d.pipe!.write(DISCONNECT); d.pipe!.end() }
  }
  return {
    devices: devices.length, connected: live.length, connectFailures: failures, connectSeconds: seconds,
    accepted, sent, windowSeconds, unackedAtEnd: unacked, disconnects, latency: Array.from(hist.counts),
    sentTotal, windowStartUs, windowEndUs,
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))
