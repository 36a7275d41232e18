// Twins, direct methods and C2D throughput of the real hub process, on loopback.
//   node --import tsx bench/c2d-twin-method.ts [--devices 100] [--seconds 5] [--shards 1] [--window 4] [--concurrency 32]
// Phases, each bounded in time (--seconds) and in count:
//   1. twin reported-property updates: every device keeps --window PATCHes in flight over raw MQTT (TCP)
//   2. direct methods: --concurrency REST calls in flight, devices answer at once; calls/s, p50/p99 latency
//   3. C2D: --concurrency REST sends in flight to connected devices that PUBACK at once; delivered/s
import https from 'node:https'
import net from 'node:net'
import { rmSync } from 'node:fs'
import { parseArgs } from 'node:util'
import mqttPacket from 'mqtt-packet'
import { createSasToken } from '../src/auth/sas-token.js'
import { spawnHub, type HubProcess } from '../test/helpers/hub-process.js'
import { tempDir } from '../test/helpers/test-hub.js'

const { values } = parseArgs({
  options: {
    devices: { type: 'string', default: '100' }, seconds: { type: 'string', default: '5' }, shards: { type: 'string', default: '1' },
    window: { type: 'string', default: '4' }, concurrency: { type: 'string', default: '32' },
  },
})
const DEVICES = Math.min(Number(values.devices), 2000)
const SECONDS = Math.min(Number(values.seconds), 60)
const WINDOW = Math.min(Number(values.window), 32)
const CONCURRENCY = Math.min(Number(values.concurrency), 256)
const MAX_TWIN_UPDATES = 2_000_000
const MAX_CALLS = 500_000
const HARD_LIMIT_MS = (SECONDS * 3 + 120) * 1000

class Device {
  private readonly parser = mqttPacket.parser({ protocolVersion: 4 })
  onPublish: (p: mqttPacket.IPublishPacket) => void = () => {}
  private connack?: () => void
  private subacks = new Map<number, () => void>()
  constructor(readonly id: string, readonly socket: net.Socket) {
    socket.setNoDelay(true)
    this.parser.on('packet', (p: mqttPacket.Packet) => {
      if (p.cmd === 'connack') this.connack?.()
      else if (p.cmd === 'suback') this.subacks.get(p.messageId!)?.()
      else if (p.cmd === 'publish') this.onPublish(p)
    })
    socket.on('data', (d) => this.parser.parse(d))
    socket.on('error', () => {})
  }
  static async connect(port: number, id: string, key: string): Promise<Device> {
    const socket = net.connect({ host: '127.0.0.1', port })
    await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
    const d = new Device(id, socket)
    const ok = new Promise<void>((resolve) => { d.connack = resolve })
    d.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: id, clean: false, keepalive: 300,
      username: `localhost/${id}/?api-version=2021-04-12`, password: Buffer.from(createSasToken(encodeURIComponent(`localhost/devices/${id}`), key)) } as mqttPacket.IConnectPacket)
    await ok
    let mid = 1
    for (const topic of ['$iothub/twin/res/#', '$iothub/methods/POST/#', `devices/${id}/messages/devicebound/#`]) {
      const messageId = mid++
      const acked = new Promise<void>((resolve) => d.subacks.set(messageId, resolve))
      d.send({ cmd: 'subscribe', messageId, subscriptions: [{ topic, qos: topic.startsWith('devices/') ? 1 : 0 }] } as mqttPacket.ISubscribePacket)
      await acked
    }
    return d
  }
  send(p: mqttPacket.Packet): void { this.socket.write(mqttPacket.generate(p)) }
  publish(topic: string, payload: string): void {
    this.send({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 0, retain: false, dup: false } as mqttPacket.IPublishPacket)
  }
}

function rest(hub: HubProcess, agent: https.Agent, method: string, path: string, body: string, headers: Record<string, string> = {}): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port: hub.ports.https, servername: 'localhost', method, path, ca: hub.ca, agent,
      headers: { Authorization: token, 'Content-Type': 'application/json', ...headers } }, (res) => {
      let text = ''
      res.on('data', (d: Buffer) => { text += d.toString() })
      res.on('end', () => resolve({ status: res.statusCode!, text }))
    })
    req.on('error', reject)
    req.end(body)
  })
}

function percentile(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]! : NaN
}

let token = ''
const hardStop = setTimeout(() => { console.error('bench: hard time limit reached'); process.exit(2) }, HARD_LIMIT_MS)
const dataDir = tempDir('hyperhub-bench-')
const hub = await spawnHub(dataDir, ['--shards', String(values.shards)])
token = createSasToken('localhost', hub.ownerKey, 'iothubowner', 3600)
const agent = new https.Agent({ keepAlive: true, maxSockets: CONCURRENCY })
const devices: Device[] = []
try {
  const ids = Array.from({ length: DEVICES }, (_, i) => `bench-${i}`)
  for (let i = 0; i < ids.length; i += 20) {
    await Promise.all(ids.slice(i, i + 20).map(async (id) => {
      const r = await rest(hub, agent, 'PUT', `/devices/${id}`, JSON.stringify({ deviceId: id }))
      devices.push(await Device.connect(hub.ports.mqttTcp, id, JSON.parse(r.text).authentication.symmetricKey.primaryKey))
    }))
  }
  console.log(`hub: ${values.shards} shard(s); ${DEVICES} devices over MQTT/TCP; ${SECONDS} s per phase; window ${WINDOW}; REST concurrency ${CONCURRENCY}`)

  // 1. twin reported-property updates
  {
    let done = 0
    let sent = 0
    let running = true
    const latencies: number[] = []
    const startedAt = new Map<string, number>()
    for (const d of devices) {
      let n = 0
      const next = () => {
        if (!running || sent >= MAX_TWIN_UPDATES) return
        const rid = `${d.id}.${n++}`
        startedAt.set(rid, performance.now())
        sent++
        d.publish(`$iothub/twin/PATCH/properties/reported/?$rid=${rid}`, `{"t":${n % 50},"seq":${n}}`)
      }
      d.onPublish = (p) => {
        if (!p.topic.startsWith('$iothub/twin/res/204/')) return
        const rid = decodeURIComponent(/\$rid=([^&]+)/.exec(p.topic)![1]!)
        latencies.push(performance.now() - startedAt.get(rid)!)
        startedAt.delete(rid)
        done++
        next()
      }
      for (let w = 0; w < WINDOW; w++) next()
    }
    const t0 = performance.now()
    await new Promise((r) => setTimeout(r, SECONDS * 1000))
    running = false
    const elapsed = (performance.now() - t0) / 1000
    latencies.sort((a, b) => a - b)
    console.log(`twin reported updates: ${Math.round(done / elapsed)}/s (${done} in ${elapsed.toFixed(1)} s), 204 p50 ${percentile(latencies, 0.5).toFixed(1)} ms, p99 ${percentile(latencies, 0.99).toFixed(1)} ms`)
    await new Promise((r) => setTimeout(r, 500))
  }

  // 2. direct methods
  {
    for (const d of devices) {
      d.onPublish = (p) => {
        const m = /^\$iothub\/methods\/POST\/[^/]+\/\?\$rid=(.+)$/.exec(p.topic)
        if (m) d.publish(`$iothub/methods/res/200/?$rid=${m[1]}`, p.payload.toString())
      }
    }
    const latencies: number[] = []
    let failures = 0
    let calls = 0
    const deadline = performance.now() + SECONDS * 1000
    const t0 = performance.now()
    await Promise.all(Array.from({ length: CONCURRENCY }, async (_, w) => {
      while (performance.now() < deadline && calls < MAX_CALLS) {
        const d = devices[(calls++ * 7 + w) % devices.length]!
        const s = performance.now()
        const r = await rest(hub, agent, 'POST', `/twins/${d.id}/methods`, JSON.stringify({ methodName: 'ping', payload: { w }, responseTimeoutInSeconds: 10 }))
        if (r.status === 200) latencies.push(performance.now() - s)
        else failures++
      }
    }))
    const elapsed = (performance.now() - t0) / 1000
    latencies.sort((a, b) => a - b)
    console.log(`direct methods: ${Math.round(latencies.length / elapsed)} calls/s (${latencies.length} ok, ${failures} failed), p50 ${percentile(latencies, 0.5).toFixed(1)} ms, p99 ${percentile(latencies, 0.99).toFixed(1)} ms`)
  }

  // 3. C2D delivered per second
  {
    let delivered = 0
    for (const d of devices) {
      d.onPublish = (p) => {
        if (p.qos !== 1) return
        delivered++
        d.send({ cmd: 'puback', messageId: p.messageId } as mqttPacket.IPubackPacket)
      }
    }
    let sent = 0
    let refused = 0
    const deadline = performance.now() + SECONDS * 1000
    const t0 = performance.now()
    await Promise.all(Array.from({ length: CONCURRENCY }, async (_, w) => {
      while (performance.now() < deadline && sent < MAX_CALLS) {
        const d = devices[(sent++ * 13 + w) % devices.length]!
        const r = await rest(hub, agent, 'POST', `/devices/${d.id}/messages/deviceBound`, 'x'.repeat(256), { 'iothub-messageid': `m${sent}` })
        if (r.status !== 200) refused++
      }
    }))
    const drainUntil = performance.now() + 10_000
    while (delivered < sent - refused && performance.now() < drainUntil) await new Promise((r) => setTimeout(r, 20))
    const elapsed = (performance.now() - t0) / 1000
    console.log(`C2D: ${Math.round(delivered / elapsed)} delivered/s (${delivered} of ${sent - refused} accepted, ${refused} refused, ${elapsed.toFixed(1)} s, 256-byte bodies, PUBACK at once)`)
  }
} finally {
  for (const d of devices) d.socket.destroy()
  agent.destroy()
  hub.child.kill('SIGTERM')
  await hub.exited
  rmSync(dataDir, { recursive: true, force: true })
  clearTimeout(hardStop)
}
