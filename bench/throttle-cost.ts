// What the tier's D2C check costs on the hot path: QoS 1 telemetry from 100 devices over TCP with tier
// `unlimited` beside tier S3 with 10 units whose D2C and connection limits are set beyond reach
// (every message still goes through the throttle and the meter), on one hub process whose tier is
// switched at run time between interleaved runs. Rate and hub CPU time per message for each.
// Usage: npx tsx bench/throttle-cost.ts [--runs 3 --seconds 5]
// Loopback only; every loop is bounded in count and time.
import { parseArgs } from 'node:util'
import { spawnHub } from '../test/helpers/hub-process.js'
import { seedPki, tempDir } from '../test/helpers/test-hub.js'
import { hubCredentials, deviceIds, provisionDevices } from './load/provision.js'
import { runPublishers } from './load/publisher.js'
import { cpuMs } from './load/proc-stats.js'

const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' }, seconds: { type: 'string', default: '5' } } })
const RUNS = Number(values.runs)
const SECONDS = Number(values.seconds)
const WARMUP_MS = 1000
const KEY = Buffer.from('hyperhub-bench-shared-device-key').toString('base64')
const SETTINGS = {
  unlimited: { tier: 'unlimited', units: 1 },
  'S3:10, limits out of reach': { tier: 'S3', units: 10, overrides: { d2c: 1e9, connections: 1e9 } },
} as const

const dataDir = tempDir('hyperhub-throttle-cost-')
seedPki(dataDir)
const hub = await spawnHub(dataDir)
const figures: { setting: string; rate: number; cpuUsPerMsg: number }[] = []
try {
  const ids = deviceIds(100)
  await provisionDevices({ httpsPort: hub.ports.https, ownerKey: hub.ownerKey, ids, deviceKey: KEY })
  for (let run = 1; run <= RUNS; run++) {
    const order = Object.keys(SETTINGS) as (keyof typeof SETTINGS)[]
    if (run % 2 === 0) order.reverse()
    for (const name of order) {
      const r = await hub.rest('PUT', '/hyperhub/tier', SETTINGS[name])
      if (r.status !== 200) throw new Error(`tier not set: ${r.status} ${JSON.stringify(r.body)}`)
      let cpu0 = 0, cpu1 = 0
      const stats = await runPublishers({
        target: { host: '127.0.0.1', port: hub.ports.mqttTcp, transport: 'tcp' }, devices: ids.map((id) => hubCredentials(id, KEY)),
        qos: 1, window: 10, payloadBytes: 256, rate: 0, warmupMs: WARMUP_MS, durationMs: SECONDS * 1000, connectConcurrency: 100,
        qos0Batch: 16, qos0Window: 1000, drainMs: 5000,
      }, async () => {
        setTimeout(() => { cpu0 = cpuMs(hub.child.pid!) }, WARMUP_MS)
        setTimeout(() => { cpu1 = cpuMs(hub.child.pid!) }, WARMUP_MS + SECONDS * 1000)
      })
      const rate = stats.accepted / stats.windowSeconds
      const cpuUsPerMsg = ((cpu1 - cpu0) * 1000) / stats.accepted
      figures.push({ setting: name, rate, cpuUsPerMsg })
      console.log(`run ${run} ${name}: ${Math.round(rate)} msg/s, hub ${cpuUsPerMsg.toFixed(2)} µs CPU/msg`)
    }
  }
  console.log(`\n| QoS 1, 100 devices, TCP, ${SECONDS} s × ${RUNS} interleaved runs | msg/s (range) | hub CPU µs/msg (range) |`)
  console.log('|---|---|---|')
  for (const name of Object.keys(SETTINGS)) {
    const mine = figures.filter((f) => f.setting === name)
    const range = (xs: number[], d = 0) => `${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)}`
    console.log(`| ${name} | ${range(mine.map((f) => f.rate))} | ${range(mine.map((f) => f.cpuUsPerMsg), 2)} |`)
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
  const [u, s] = Object.keys(SETTINGS).map((n) => figures.filter((f) => f.setting === n))
  console.log(`\nmedian rate: ${((med(s!.map((f) => f.rate)) / med(u!.map((f) => f.rate)) - 1) * 100).toFixed(1)} %, median CPU/msg: ${((med(s!.map((f) => f.cpuUsPerMsg)) / med(u!.map((f) => f.cpuUsPerMsg)) - 1) * 100).toFixed(1)} % (throttled tier vs unlimited)`)
} finally {
  hub.child.kill('SIGTERM')
  await hub.exited
}
process.exit(0)
