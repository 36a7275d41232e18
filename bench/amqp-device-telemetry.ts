// Device telemetry over AMQP beside MQTT, against one real hub process, in one run: 100 devices,
// 256-byte messages, 10 unacknowledged per device; each AMQP message counts once the hub settled it
// `accepted` (after its commit), each MQTT one at its PUBACK (the same promise). Runs alternate
// (MQTT over TLS, AMQP over TLS, …) so the machine's noise falls on both; CPU time per message of the
// hub and of this generator process is reported beside the rate.
// Usage: npm run bench:amqp-devices [-- --runs 3 --seconds 5 --only amqp|mqtt]
// Loopback only; every loop is bounded in count and time.
import { parseArgs } from 'node:util'
import rhea from 'rhea'
import { spawnHub, type HubProcess } from '../test/helpers/hub-process.js'
import { seedPki, tempDir } from '../test/helpers/test-hub.js'
import { amqpConnect, putToken } from '../test/helpers/amqp-client.js'
import { createSasToken } from '../src/auth/sas-token.js'
import { hubCredentials, deviceIds, provisionDevices } from './load/provision.js'
import { runPublishers } from './load/publisher.js'
import { cpuMs } from './load/proc-stats.js'

const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' }, seconds: { type: 'string', default: '5' }, devices: { type: 'string', default: '100' }, only: { type: 'string' } } })
const RUNS = Number(values.runs)
const SECONDS = Number(values.seconds)
const DEVICES = Number(values.devices)
const WINDOW = 10
const PAYLOAD = Buffer.alloc(256, 0x61)
const WARMUP_MS = 1000
const KEY = Buffer.from('hyperhub-bench-shared-device-key').toString('base64')

interface Figure { protocol: string; run: number; accepted: number; seconds: number; hubCpuMs: number; genCpuMs: number }

const ownCpuMs = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000 }

/** 100 AMQP connections, one per device: put-token, a telemetry sender, WINDOW messages unsettled each. */
async function amqpRun(hub: HubProcess, ids: string[], run: number): Promise<Figure> {
  const conns: rhea.Connection[] = []
  const senders: rhea.Sender[] = []
  for (const id of ids) {
    const audience = encodeURIComponent(`localhost/devices/${id}`)
    const conn = await amqpConnect(hub.ports.amqp!, hub.ca)
    conns.push(conn)
    if (await putToken(conn, createSasToken(audience, KEY, undefined, 3600), audience) !== 200) throw new Error(`put-token refused for ${id}`)
    const sender = conn.open_sender({ target: { address: `/devices/${id}/messages/events` } })
    await new Promise((resolve) => sender.once('sendable', resolve))
    senders.push(sender)
  }
  let running = true
  let counting = false
  let accepted = 0
  let rejected = 0
  let n = 0
  const body = rhea.message.data_section(PAYLOAD)
  for (const sender of senders) {
    sender.on('accepted', () => {
      if (counting) accepted++
      if (running) sender.send({ message_id: `m${n++}`, body })
    })
    sender.on('rejected', () => { rejected++ })
    for (let w = 0; w < WINDOW; w++) sender.send({ message_id: `m${n++}`, body })
  }
  await new Promise((r) => setTimeout(r, WARMUP_MS))
  const hub0 = cpuMs(hub.child.pid!), gen0 = ownCpuMs(), t0 = performance.now()
  counting = true
  await new Promise((r) => setTimeout(r, SECONDS * 1000))
  counting = false
  const seconds = (performance.now() - t0) / 1000
  const hubCpu = cpuMs(hub.child.pid!) - hub0, genCpu = ownCpuMs() - gen0
  running = false
  if (rejected > 0) console.log(`  amqp: ${rejected} rejected`)
  for (const c of conns) c.close()
  await new Promise((r) => setTimeout(r, 500))
  return { protocol: 'AMQP over TLS (5671)', run, accepted, seconds, hubCpuMs: hubCpu, genCpuMs: genCpu }
}

async function mqttRun(hub: HubProcess, ids: string[], run: number): Promise<Figure> {
  // the window opens WARMUP_MS after `go` and lasts SECONDS: CPU is read at its edges by the clock
  let hub0 = 0, gen0 = 0, hub1 = 0, gen1 = 0
  const stats = await runPublishers({
    target: { host: '127.0.0.1', port: hub.ports.mqtt, transport: 'tls', ca: hub.ca }, devices: ids.map((id) => hubCredentials(id, KEY)),
    qos: 1, window: WINDOW, payloadBytes: PAYLOAD.length, rate: 0, warmupMs: WARMUP_MS, durationMs: SECONDS * 1000, connectConcurrency: 50,
    qos0Batch: 16, qos0Window: 1000, drainMs: 5000,
  }, async () => {
    setTimeout(() => { hub0 = cpuMs(hub.child.pid!); gen0 = ownCpuMs() }, WARMUP_MS)
    setTimeout(() => { hub1 = cpuMs(hub.child.pid!); gen1 = ownCpuMs() }, WARMUP_MS + SECONDS * 1000)
  })
  return { protocol: 'MQTT over TLS (8883)', run, accepted: stats.accepted, seconds: stats.windowSeconds, hubCpuMs: hub1 - hub0, genCpuMs: gen1 - gen0 }
}

const dataDir = tempDir('hyperhub-amqp-devices-bench-')
seedPki(dataDir)
const hub = await spawnHub(dataDir)
const figures: Figure[] = []
try {
  const ids = deviceIds(DEVICES)
  await provisionDevices({ httpsPort: hub.ports.https, ownerKey: hub.ownerKey, ids, deviceKey: KEY })
  for (let run = 1; run <= RUNS; run++) {
    const order = run % 2 === 1 ? [mqttRun, amqpRun] : [amqpRun, mqttRun]
    // --only amqp|mqtt: one protocol alone (for profiles)
    for (const measure of order.filter((m) => !values.only || m === (values.only === 'amqp' ? amqpRun : mqttRun))) {
      const f = await measure(hub, ids, run)
      figures.push(f)
      console.log(`run ${run} ${f.protocol}: ${Math.round(f.accepted / f.seconds)} msg/s, hub ${(f.hubCpuMs * 1000 / f.accepted).toFixed(1)} µs CPU/msg, generator ${(f.genCpuMs * 1000 / f.accepted).toFixed(1)} µs CPU/msg`)
    }
  }
  console.log(`\n| ${DEVICES} devices, 256 B, ${WINDOW} unacknowledged each, ${SECONDS} s × ${RUNS} interleaved runs | msg/s (range) | hub CPU µs/msg (range) | generator CPU µs/msg (range) |`)
  console.log('|---|---|---|---|')
  for (const protocol of [...new Set(figures.map((f) => f.protocol))]) {
    const mine = figures.filter((f) => f.protocol === protocol)
    const range = (xs: number[], digits = 0) => `${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}`
    console.log(`| ${protocol} | ${range(mine.map((f) => f.accepted / f.seconds))} | ${range(mine.map((f) => (f.hubCpuMs * 1000) / f.accepted), 1)} | ${range(mine.map((f) => (f.genCpuMs * 1000) / f.accepted), 1)} |`)
  }
} finally {
  hub.child.kill('SIGTERM')
  await hub.exited
}
process.exit(0)
