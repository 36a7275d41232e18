// Scheduled jobs at fleet size: how many devices per second a job reaches, a twin-update job over
// N twins and a method job over M connected devices, alone and while 100 devices publish QoS 1
// telemetry as fast as the hub acknowledges it. Against the real hub process on the default
// `unlimited` tier (a job keeps 16 device operations in flight; a tier's jobDeviceOps throttle would
// cap it lower), and what the telemetry keeps of its rate meanwhile. Runs interleave (telemetry
// alone, twin, twin+telemetry, method, method+telemetry) × runs.
//
// Usage: npx tsx bench/job-fanout.ts [--twins 5000 --methods 2000 --runs 3]
// Loopback only; every loop is bounded in count and time. Writes bench/results/<time>-job-fanout.{json,txt}.
import { fork } from 'node:child_process'
import net from 'node:net'
import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { spawnHub } from '../test/helpers/hub-process.js'
import { seedPki, tempDir } from '../test/helpers/test-hub.js'
import { deviceIds, hubCredentials, provisionDevices } from './load/provision.js'
import { ownerRest } from './load/hub-rest.js'
import { cpuMs } from './load/proc-stats.js'
import mqttPacket from 'mqtt-packet'
import type { PublishStats } from './load/publisher.js'

const { values } = parseArgs({ options: { twins: { type: 'string', default: '5000' }, methods: { type: 'string', default: '2000' }, runs: { type: 'string', default: '3' } } })
const TWINS = Number(values.twins)
const METHODS = Number(values.methods)
const RUNS = Number(values.runs)
const TELEMETRY_DEVICES = 100
const KEY = Buffer.from('hyperhub-bench-shared-device-key').toString('base64')
const JOB_TIMEOUT_MS = 300_000
/** Each telemetry run: long enough to outlast a job (which starts 3 s in). */
const TELEMETRY_MS = 15_000

const dataDir = tempDir('hyperhub-bench-jobs-')
seedPki(dataDir)
const hub = await spawnHub(dataDir, ['--shards', '1'])
const rest = ownerRest(hub, 8)
const call = rest.call

const twinIds = deviceIds(TWINS, 'jt-')
const methodIds = deviceIds(METHODS, 'jm-')
const telemetryIds = deviceIds(TELEMETRY_DEVICES, 'tel-')
const t0 = Date.now()
await provisionDevices({ httpsPort: hub.ports.https, ownerKey: hub.ownerKey, ids: [...twinIds, ...methodIds, ...telemetryIds], deviceKey: KEY, concurrency: 32 })

/** A raw MQTT device that answers every method with 200. */
function methodDevice(id: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const creds = hubCredentials(id, KEY)
    const s = net.connect({ host: '127.0.0.1', port: hub.ports.mqttTcp })
    const parser = mqttPacket.parser({ protocolVersion: 4 })
    s.on('error', reject)
    s.on('data', (chunk: Buffer) => parser.parse(chunk))
    parser.on('packet', (p: mqttPacket.Packet) => {
      if (p.cmd === 'suback') resolve(s)
      if (p.cmd !== 'publish') return
      const rid = p.topic.slice(p.topic.indexOf('$rid=') + 5)
      s.write(mqttPacket.generate({ cmd: 'publish', topic: `$iothub/methods/res/200/?$rid=${rid}`, payload: '{"ok":true}', qos: 0, dup: false, retain: false }))
    })
    s.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: id, username: creds.username, password: Buffer.from(creds.password!), keepalive: 600, clean: true }))
    s.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$iothub/methods/POST/#', qos: 0 }] }))
  })
}
const sockets: net.Socket[] = []
for (let i = 0; i < methodIds.length; i += 100) sockets.push(...await Promise.all(methodIds.slice(i, i + 100).map(methodDevice)))
const setupS = (Date.now() - t0) / 1000

/** Telemetry from 100 devices (QoS 1, window 8, 256 B) in a generator child process, for `ms`. */
function telemetry(ms: number): { stats: Promise<PublishStats>; pid: number } {
  const child = fork(new URL('./load/generator-process.ts', import.meta.url).pathname, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const stats = new Promise<PublishStats>((resolve, reject) => {
    child.on('message', (m: { type: string; stats?: PublishStats; message?: string }) => {
      if (m.type === 'ready') child.send({ type: 'go' })
      if (m.type === 'done') resolve(m.stats!)
      if (m.type === 'error') reject(new Error(m.message))
    })
  })
  child.send({ type: 'run', job: { kind: 'publish', config: {
    target: { host: '127.0.0.1', port: hub.ports.mqttTcp, transport: 'tcp' }, devices: telemetryIds.map((id) => hubCredentials(id, KEY)), qos: 1, window: 8,
    payloadBytes: 256, rate: 0, warmupMs: 1000, durationMs: ms, connectConcurrency: 100, qos0Batch: 16, qos0Window: 1000, drainMs: 5000,
  } } })
  return { stats, pid: child.pid! }
}

interface Run { kind: 'twin' | 'method'; telemetry: boolean; devices: number; ms: number; perSec: number; hubCpuMs: number; cpuMsPerDevice: number; telemetryPerSec: number | null }
const runs: Run[] = []
let jobNo = 0
async function runJob(kind: 'twin' | 'method', withTelemetry: boolean): Promise<void> {
  const id = `bench-${++jobNo}`
  // the telemetry runs past the job: started first, it has warmed up before the job is created
  const load = withTelemetry ? telemetry(TELEMETRY_MS) : undefined
  if (load) await new Promise((r) => setTimeout(r, 3000))
  const cpu0 = cpuMs(hub.child.pid!)
  const started = performance.now()
  const body = kind === 'twin'
    ? { type: 'scheduleUpdateTwin', queryCondition: "STARTSWITH(deviceId, 'jt-')", updateTwin: { etag: '*', properties: { desired: { run: jobNo } } } }
    : { type: 'scheduleDeviceMethod', queryCondition: "STARTSWITH(deviceId, 'jm-')", cloudToDeviceMethod: { methodName: 'ping', payload: { run: jobNo }, responseTimeoutInSeconds: 30 } }
  const put = await call('PUT', `/jobs/v2/${id}?api-version=2021-04-12`, body)
  if (put.status !== 200) throw new Error(`job not created: ${put.status} ${JSON.stringify(put.body)}`)
  let job: any
  const deadline = Date.now() + JOB_TIMEOUT_MS
  for (;;) {
    job = (await call('GET', `/jobs/v2/${id}?api-version=2021-04-12`)).body
    if (job.status === 'completed' || job.status === 'failed' || Date.now() > deadline) break
    await new Promise((r) => setTimeout(r, 50))
  }
  const ms = performance.now() - started
  const hubCpu = cpuMs(hub.child.pid!) - cpu0
  if (job.status !== 'completed') throw new Error(`job ${id} ended ${job.status}`)
  const s = job.deviceJobStatistics
  if (s.succeededCount !== s.deviceCount) throw new Error(`job ${id}: ${s.failedCount} devices failed`)
  let telemetryPerSec: number | null = null
  if (load) {
    const st = await load.stats
    telemetryPerSec = Math.round(st.accepted / st.windowSeconds)
  }
  runs.push({ kind, telemetry: withTelemetry, devices: s.deviceCount, ms: Math.round(ms), perSec: Math.round(s.deviceCount / (ms / 1000)), hubCpuMs: Math.round(hubCpu), cpuMsPerDevice: Number((hubCpu / s.deviceCount).toFixed(3)), telemetryPerSec })
  console.log(JSON.stringify(runs.at(-1)))
}

/** The telemetry alone, for the rate a job's load is compared with. */
async function telemetryAlone(): Promise<void> {
  // as long as the runs with a job (which start 3 s in), so the rates compare
  const st = await telemetry(TELEMETRY_MS).stats
  baseline.push(Math.round(st.accepted / st.windowSeconds))
  console.log(JSON.stringify({ telemetryAlone: baseline.at(-1) }))
}
const baseline: number[] = []

for (let r = 0; r < RUNS; r++) {
  await telemetryAlone()
  await runJob('twin', false)
  await runJob('twin', true)
  await runJob('method', false)
  await runJob('method', true)
}

for (const s of sockets) s.destroy()
hub.child.kill('SIGTERM')
await hub.exited
rest.close()
rmSync(dataDir, { recursive: true, force: true })

const range = (xs: number[]) => `${Math.min(...xs)}–${Math.max(...xs)}`
const lines = [
  `job fan-out: twin jobs over ${TWINS} twins, method jobs over ${METHODS} connected devices, 1 shard, unlimited tier, ${RUNS} interleaved runs (setup ${setupS.toFixed(0)} s)`,
  'job | telemetry | devices | ms | devices/s | hub CPU ms | CPU ms/device | telemetry msg/s during',
  ...runs.map((r) => `${r.kind} | ${r.telemetry ? 'yes' : 'no'} | ${r.devices} | ${r.ms} | ${r.perSec} | ${r.hubCpuMs} | ${r.cpuMsPerDevice} | ${r.telemetryPerSec ?? '-'}`),
  '',
  `telemetry alone (100 devices, QoS 1): ${range(baseline)} msg/s`,
  'summary (range over runs): job | telemetry | devices/s | CPU ms/device',
  ...(['twin', 'method'] as const).flatMap((kind) => [false, true].map((tel) => {
    const rs = runs.filter((r) => r.kind === kind && r.telemetry === tel)
    return `${kind} | ${tel ? 'yes' : 'no'} | ${range(rs.map((r) => r.perSec))} | ${range(rs.map((r) => r.cpuMsPerDevice))}`
  })),
]
console.log(lines.join('\n'))
const stamp = new Date().toISOString().replace(/[:.]/g, '-')
const base = join('bench', 'results', `${stamp}-job-fanout`)
writeFileSync(`${base}.json`, JSON.stringify({ twins: TWINS, methods: METHODS, runs, telemetryAlone: baseline }, null, 2))
writeFileSync(`${base}.txt`, lines.join('\n') + '\n')
