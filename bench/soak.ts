// Soak: the real hub under mixed load for a while (10 minutes by default) with its RSS and CPU
// sampled every second, then a check that nothing acknowledged is missing. Load: QoS 1 telemetry
// from many devices, twin reads and reported patches, desired patches, C2D sends, direct methods, a
// slow stream reader, a device that asks for its twin and never reads, and an AMQP client that sends
// garbage before logging in. Everything on 127.0.0.1, every loop bounded by the deadline.
//   tsx bench/soak.ts [--minutes 10] [--rate 2000]
import https from 'node:https'
import net from 'node:net'
import tls from 'node:tls'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import mqttPacket from 'mqtt-packet'
import WebSocket from 'ws'
import { createSasToken } from '../src/auth/sas-token.js'
import { MqttTestClient } from '../test/helpers/mqtt-test-client.js'
import { startHyperhub } from './load/servers.js'
import { cpuMs, rssKb, rssSplitKb } from './load/proc-stats.js'

const arg = (name: string, dflt: number) => { const i = process.argv.indexOf(`--${name}`); return i > 0 ? Number(process.argv[i + 1]) : dflt }
const MINUTES = arg('minutes', 10)
const RATE = arg('rate', 2000) // telemetry messages per second, all devices together
const DEVICES = 50
const PORTS = { amqp: 18971, mqttTcp: 18931, https: 18943 }
const DEVICE_KEY = Buffer.from('hyperhub-bench-shared-device-key').toString('base64')
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const hub = await startHyperhub(['--amqp-port', String(PORTS.amqp), '--shards', '1'])
const deadline = Date.now() + MINUTES * 60_000
const running = () => Date.now() < deadline
const stats = { telemetryAcked: 0, twinGets: 0, reportedPatches: 0, desiredPatches: 0, c2dSent: 0, c2dReceived: 0, methodsOk: 0, methodsFailed: 0,
  streamEvents: 0, streamGaps: 0, neverReadsConnections: 0, amqpGarbageConnections: 0, errors: [] as string[] }
const note = (e: unknown) => { if (stats.errors.length < 20) stats.errors.push(String((e as Error)?.message ?? e)) }

const reader = hub.reader() as { token: string; ca: string }
function rest(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body)
    const req = https.request({ host: '127.0.0.1', port: PORTS.https, method, path, ca: reader.ca, servername: 'localhost',
      headers: { Authorization: reader.token, 'Content-Type': 'application/json', ...headers } }, (res) => {
      let text = ''
      res.on('data', (d: Buffer) => { text += d })
      res.on('end', () => { try { resolve({ status: res.statusCode!, body: text ? JSON.parse(text) : undefined }) } catch { resolve({ status: res.statusCode!, body: text }) } })
    })
    req.on('error', reject)
    req.end(payload)
  })
}

const creds = await hub.devices(DEVICES + 12, 'soak-')
const ids = creds.map((c) => c.clientId)
const telemetryIds = ids.slice(0, DEVICES)
const [twinA, twinB, c2dA, c2dB, methodA, methodB, neverReads] = ids.slice(DEVICES)
const connect = async (id: string, clean = false) =>
  (await MqttTestClient.connect({ port: PORTS.mqttTcp, clientId: id, password: createSasToken(encodeURIComponent(`localhost/devices/${id}`), DEVICE_KEY, undefined, 6 * 3600), clean })).client

// --- telemetry: every device numbers its messages; each ack is counted in order
const ackedPerDevice = new Map<string, number>()
async function telemetry(id: string): Promise<void> {
  let c = await connect(id)
  let n = 0
  const perDevice = RATE / DEVICES
  const start = Date.now()
  while (running()) {
    const due = Math.floor(((Date.now() - start) / 1000) * perDevice)
    if (n >= due) { await sleep(5); continue }
    try {
      await c.publish(`devices/${id}/messages/events/%24.mid=${id}-${n}`, Buffer.alloc(200, 1), 1)
      ackedPerDevice.set(id, n + 1) // acks arrive in order: every message below n+1 is acknowledged
      n++
      stats.telemetryAcked++
    } catch (e) {
      note(e)
      c.destroy()
      c = await connect(id) // the unacknowledged message is sent again, under the same id
    }
  }
  await c.disconnect().catch(() => {})
}

// --- twins: reported patches and GETs from two devices, desired patches from the service
async function twins(id: string): Promise<void> {
  const c = await connect(id)
  await c.subscribe('$iothub/twin/res/#', 0)
  let rid = 0
  const ask = (topic: string, body: string) => new Promise<void>((resolve) => {
    const r = String(++rid)
    void c.next('publish', (p: mqttPacket.IPublishPacket) => p.topic.includes(`$rid=${r}`)).then(() => resolve(), () => resolve())
    c.send({ cmd: 'publish', topic: `${topic}?$rid=${r}`, payload: Buffer.from(body), qos: 0, retain: false, dup: false } as mqttPacket.IPublishPacket)
  })
  while (running()) {
    await ask('$iothub/twin/PATCH/properties/reported/', JSON.stringify({ at: Date.now(), seq: rid }))
    stats.reportedPatches++
    await ask('$iothub/twin/GET/', '')
    stats.twinGets++
    const r = await rest('PATCH', `/twins/${id}`, { properties: { desired: { at: Date.now() } } }).catch(note)
    if (r?.status === 200) stats.desiredPatches++
    await sleep(50)
  }
  c.destroy()
}

// --- C2D: the service sends, the device completes
async function c2d(id: string): Promise<void> {
  const c = await connect(id)
  await c.subscribe(`devices/${id}/messages/devicebound/#`, 1)
  c.socket.on('data', () => {
    for (const p of c.packets.splice(0)) {
      if (p.cmd !== 'publish') continue
      stats.c2dReceived++
      c.send({ cmd: 'puback', messageId: (p as mqttPacket.IPublishPacket).messageId } as mqttPacket.IPubackPacket)
    }
  })
  while (running()) {
    const r = await rest('POST', `/devices/${id}/messages/deviceBound`, `c2d ${stats.c2dSent}`).catch(note)
    if (r?.status === 200) stats.c2dSent++
    await sleep(100)
  }
  await sleep(2000) // the last ones in flight
  c.destroy()
}

// --- direct methods
async function methods(id: string): Promise<void> {
  const c = await connect(id)
  await c.subscribe('$iothub/methods/POST/#', 0)
  c.socket.on('data', () => {
    for (const p of c.packets.splice(0)) {
      const m = p.cmd === 'publish' ? /\?\$rid=(.+)$/.exec((p as mqttPacket.IPublishPacket).topic) : null
      if (m) c.send({ cmd: 'publish', topic: `$iothub/methods/res/200/?$rid=${m[1]}`, payload: Buffer.from('{"ok":true}'), qos: 0, retain: false, dup: false } as mqttPacket.IPublishPacket)
    }
  })
  while (running()) {
    const r = await rest('POST', `/twins/${id}/methods`, { methodName: 'ping', payload: { at: Date.now() }, responseTimeoutInSeconds: 10 }).catch(note)
    if (r?.status === 200) stats.methodsOk++
    else stats.methodsFailed++
    await sleep(200)
  }
  c.destroy()
}

// --- a slow stream reader from earliest: 20 ms per frame; every partition's events must come in order, without gaps
async function slowReader(): Promise<void> {
  const ws = new WebSocket(`wss://localhost:${PORTS.https}/messages/events/stream?from=earliest`, { ca: reader.ca, headers: { Authorization: reader.token } })
  const next = new Map<string, number>()
  ws.on('message', (data) => {
    for (const e of JSON.parse(data.toString()) as { partitionId: string; sequenceNumber: number }[]) {
      const want = next.get(e.partitionId)
      if (want !== undefined && e.sequenceNumber !== want) stats.streamGaps++
      next.set(e.partitionId, e.sequenceNumber + 1)
      stats.streamEvents++
    }
    const socket = (ws as unknown as { _socket: net.Socket })._socket
    socket.pause()
    setTimeout(() => socket.resume(), 20)
  })
  ws.on('error', note)
  while (running()) await sleep(1000)
  ws.close()
}

// --- a device that asks for its twin and never reads: the hub stops it, then closes it; it comes back
async function neverReading(id: string): Promise<void> {
  await rest('PATCH', `/twins/${id}`, { properties: { desired: { blob: 'x'.repeat(4000), more: 'y'.repeat(4000) } } })
  const get = mqttPacket.generate({ cmd: 'publish', topic: '$iothub/twin/GET/?$rid=1', payload: Buffer.alloc(0), qos: 0, retain: false, dup: false } as mqttPacket.IPublishPacket)
  while (running()) {
    const c = await connect(id, true)
    await c.subscribe('$iothub/twin/res/#', 0)
    stats.neverReadsConnections++
    c.socket.pause()
    let closed = false
    void c.closed.then(() => { closed = true })
    for (let i = 0; i < 2000 && running() && !closed; i++) {
      c.socket.write(Buffer.concat(Array.from({ length: 50 }, () => get)))
      await sleep(10)
    }
    c.destroy()
  }
}

// --- AMQP garbage before login: a frame header claiming a huge frame, random bytes, a new connection each second
async function amqpGarbage(): Promise<void> {
  while (running()) {
    await new Promise<void>((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port: PORTS.amqp, ca: reader.ca, servername: 'localhost' }, () => {
        stats.amqpGarbageConnections++
        s.write(Buffer.from('AMQP\x00\x01\x00\x00', 'binary'))
        s.write(Buffer.from([0x7f, 0xff, 0xff, 0xff, 2, 0, 0, 0]))
        s.write(Buffer.alloc(256 * 1024, 0xab))
      })
      s.on('error', () => {})
      s.on('close', () => resolve())
      setTimeout(() => { s.destroy(); resolve() }, 1000)
    })
  }
}

// --- samples
const samples: { t: number; rssMb: number; anonMb: number; fileMb: number; cpuMs: number }[] = []
const mb = (kb: number) => Math.round(kb / 102.4) / 10
const sampler = setInterval(() => {
  const split = rssSplitKb(hub.pid)
  samples.push({ t: Date.now(), rssMb: mb(rssKb(hub.pid)), anonMb: mb(split.anon), fileMb: mb(split.file), cpuMs: cpuMs(hub.pid) })
}, 1000)

const started = Date.now()
await Promise.all([
  ...telemetryIds.map((id) => telemetry(id).catch(note)),
  twins(twinA!).catch(note), twins(twinB!).catch(note), c2d(c2dA!).catch(note), c2d(c2dB!).catch(note),
  methods(methodA!).catch(note), methods(methodB!).catch(note), slowReader().catch(note), neverReading(neverReads!).catch(note), amqpGarbage().catch(note),
])
clearInterval(sampler)

// --- nothing acknowledged is missing: every device's messages 0..acked-1 are in the built-in endpoint
const stored = new Map<string, Set<number>>()
for (let p = 0; p < 4; p++) {
  for (let from = 0; ;) {
    const page = (await rest('GET', `/messages/events/partitions/${p}/events?fromSequenceNumber=${from}&maxCount=1000`)).body as { events: { systemProperties: Record<string, string> }[]; nextSequenceNumber: number }
    for (const e of page.events) {
      const mid = e.systemProperties['message-id']
      const m = mid ? /^(.*)-(\d+)$/.exec(mid) : null
      if (!m) continue
      let set = stored.get(m[1]!)
      if (!set) stored.set(m[1]!, (set = new Set()))
      set.add(Number(m[2]))
    }
    if (page.events.length === 0) break // pages stop at 1,000 events or 4 MB
    from = page.nextSequenceNumber
  }
}
let missing = 0
for (const [id, acked] of ackedPerDevice) for (let n = 0; n < acked; n++) if (!stored.get(id)?.has(n)) missing++
await hub.stop()

const spread = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b)
  return { first: values[0], p50: sorted[Math.floor(sorted.length / 2)], max: sorted.at(-1), last: values.at(-1) }
}
const cpuSeconds = (samples.at(-1)!.cpuMs - samples[0]!.cpuMs) / 1000
const result = {
  minutes: MINUTES, rate: RATE, devices: DEVICES, seconds: (Date.now() - started) / 1000,
  // anonymous memory is what the hub holds; file-backed pages are LMDB's mapped data, which the kernel reclaims
  rssMb: spread(samples.map((s) => s.rssMb)), anonMb: spread(samples.map((s) => s.anonMb)), fileMb: spread(samples.map((s) => s.fileMb)),
  hubCpuSeconds: cpuSeconds, cpuMsPerTelemetryMessage: Math.round((cpuSeconds * 1000 / Math.max(1, stats.telemetryAcked)) * 1000) / 1000,
  missingAcknowledged: missing, ...stats, samples,
}
const stamp = new Date().toISOString().replace(/[:T]/g, '-').slice(0, 19)
mkdirSync('bench/results', { recursive: true })
writeFileSync(join('bench/results', `${stamp}-soak.json`), JSON.stringify(result, null, 1))
const { samples: _s, ...summary } = result
console.log(JSON.stringify(summary, null, 1))
process.exit(missing === 0 && stats.streamGaps === 0 ? 0 : 1)
