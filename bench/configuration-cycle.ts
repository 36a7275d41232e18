// Automatic configurations at fleet size: how long one cycle takes to apply a configuration to half
// of N twins (the query worker's one-pass plan, then the shards' twin writes), what it costs the hub
// in CPU, and whether the main thread stays free meanwhile — measured from outside as the latency of
// a cheap REST call (GET /devices/{id} over a kept-alive connection) every 20 ms, during the cycle and
// during an idle window of the same length just before it. Against the real hub process.
//
// Usage: npx tsx bench/configuration-cycle.ts [--devices 20000 --runs 3]
// Loopback only; every loop is bounded in count and time. Writes bench/results/<time>-configuration-cycle.{json,txt}.
import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { spawnHub } from '../test/helpers/hub-process.js'
import { seedPki, tempDir } from '../test/helpers/test-hub.js'
import { deviceIds, provisionDevices } from './load/provision.js'
import { ownerRest } from './load/hub-rest.js'
import { cpuMs, rssKb } from './load/proc-stats.js'

const { values } = parseArgs({ options: { devices: { type: 'string', default: '20000' }, runs: { type: 'string', default: '3' } } })
const N = Number(values.devices)
const RUNS = Number(values.runs)
const KEY = Buffer.from('hyperhub-bench-shared-device-key').toString('base64')
const CYCLE_TIMEOUT_MS = 300_000
const PROBE_EVERY_MS = 20

const dataDir = tempDir('hyperhub-bench-cfg-')
seedPki(dataDir)
// cycles only when a configuration changes (the interval is an hour)
const hub = await spawnHub(dataDir, ['--configuration-interval-seconds', '3600', '--shards', '1'])
const rest = ownerRest(hub, 16)
const call = rest.call

/** Probe latencies (ms) while `until` is pending. */
async function probe(until: Promise<unknown>): Promise<number[]> {
  const lat: number[] = []
  let done = false
  // the caller awaits `until` itself; this only watches it (a rejection ends the probe too)
  until.then(() => { done = true }, () => { done = true })
  const deadline = Date.now() + CYCLE_TIMEOUT_MS
  while (!done && Date.now() < deadline) {
    lat.push((await call('GET', '/devices/cfg-000001?api-version=2021-04-12')).ms)
    await new Promise((r) => setTimeout(r, PROBE_EVERY_MS))
  }
  return lat
}

const pct = (xs: number[], p: number) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? 0 }

const ids = deviceIds(N, 'cfg-')
const t0 = Date.now()
await provisionDevices({ httpsPort: hub.ports.https, ownerKey: hub.ownerKey, ids, deviceKey: KEY, concurrency: 32 })
// half the fleet in group a
let next = 0
await Promise.all(Array.from({ length: 32 }, async () => {
  while (next < ids.length) {
    const i = next++
    const r = await call('PATCH', `/twins/${ids[i]}?api-version=2021-04-12`, { tags: { group: i % 2 === 0 ? 'a' : 'b' } })
    if (r.status !== 200) throw new Error(`tagging failed: ${r.status}`)
  }
}))
const setupS = (Date.now() - t0) / 1000

interface Run { run: number; cycleMs: number; hubCpuMs: number; cpuMsPerTwin: number; rssDeltaMb: number; idle: { p50: number; p99: number; max: number }; during: { p50: number; p99: number; max: number; probes: number } }
const runs: Run[] = []
for (let r = 1; r <= RUNS; r++) {
  const id = `bench-${r}`
  // idle window first, as long as the last cycle took (5 s on the first run)
  const idleMs = runs.at(-1)?.cycleMs ?? 5000
  const idle = await probe(new Promise((res) => setTimeout(res, idleMs)))
  const cpu0 = cpuMs(hub.child.pid!)
  const rss0 = rssKb(hub.child.pid!)
  const started = performance.now()
  const put = await call('PUT', `/configurations/${id}?api-version=2021-04-12`, {
    content: { deviceContent: { 'properties.desired.bench': { run: r } } }, targetCondition: "tags.group='a'", priority: r,
    metrics: { queries: { acked: "SELECT deviceId FROM devices WHERE properties.reported.bench.run = 1" } },
  })
  if (put.status !== 200) throw new Error(`configuration not stored: ${put.status} ${JSON.stringify(put.body)}`)
  const applied = (async () => {
    const deadline = Date.now() + CYCLE_TIMEOUT_MS
    while (Date.now() < deadline) {
      const c = await call('GET', `/configurations/${id}?api-version=2021-04-12`)
      if (c.body.systemMetrics.results.appliedCount === N / 2) return
      await new Promise((res) => setTimeout(res, 100))
    }
    throw new Error('the cycle did not finish in time')
  })()
  const during = await probe(applied)
  await applied
  const cycleMs = performance.now() - started
  const hubCpu = cpuMs(hub.child.pid!) - cpu0
  runs.push({
    run: r, cycleMs: Math.round(cycleMs), hubCpuMs: Math.round(hubCpu), cpuMsPerTwin: Number((hubCpu / (N / 2)).toFixed(3)),
    rssDeltaMb: Math.round((rssKb(hub.child.pid!) - rss0) / 1024),
    idle: { p50: Number(pct(idle, 0.5).toFixed(1)), p99: Number(pct(idle, 0.99).toFixed(1)), max: Number(Math.max(...idle).toFixed(1)) },
    during: { p50: Number(pct(during, 0.5).toFixed(1)), p99: Number(pct(during, 0.99).toFixed(1)), max: Number(Math.max(...during).toFixed(1)), probes: during.length },
  })
  console.log(JSON.stringify(runs.at(-1)))
}

hub.child.kill('SIGTERM')
await hub.exited
rest.close()
rmSync(dataDir, { recursive: true, force: true })

const stamp = new Date().toISOString().replace(/[:.]/g, '-')
const lines = [
  `configuration cycle: ${N} devices, half targeted, 1 shard, ${RUNS} runs (setup ${setupS.toFixed(0)} s)`,
  'run | cycle ms | hub CPU ms | CPU ms/twin | RSS Δ MB | probe idle p50/p99/max ms | probe during p50/p99/max ms (n)',
  ...runs.map((r) => `${r.run} | ${r.cycleMs} | ${r.hubCpuMs} | ${r.cpuMsPerTwin} | ${r.rssDeltaMb} | ${r.idle.p50}/${r.idle.p99}/${r.idle.max} | ${r.during.p50}/${r.during.p99}/${r.during.max} (${r.during.probes})`),
]
console.log(lines.join('\n'))
const base = join('bench', 'results', `${stamp}-configuration-cycle`)
writeFileSync(`${base}.json`, JSON.stringify({ devices: N, runs }, null, 2))
writeFileSync(`${base}.txt`, lines.join('\n') + '\n')
