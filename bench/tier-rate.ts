// The D2C throttle under load, per tier: devices offer twice a tier's D2C limit for a while (the
// burst of 60 s of the limit is served at once, then 10 s of backlog queue, then the limit), and the
// hub's own counts (GET /hyperhub/metering, read every second) give what reached it, what it accepted
// (at once or after queueing) and what it refused. Writes a PNG of the seconds and a JSON of them to
// bench/results/, and prints the accepted mean once the burst and backlog are spent against the limit.
// Usage: npx tsx bench/tier-rate.ts [--seconds 135 --tiers S1:1,S1:10,S3:1]
// Loopback only; every loop is bounded in count and time.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Resvg } from '@resvg/resvg-js'
import * as vega from 'vega'
import { compile, type TopLevelSpec } from 'vega-lite'
import { spawnHub, type HubProcess } from '../test/helpers/hub-process.js'
import { seedPki, tempDir } from '../test/helpers/test-hub.js'
import { hubCredentials, deviceIds, provisionDevices } from './load/provision.js'
import { runPublishers } from './load/publisher.js'

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '135' }, tiers: { type: 'string', default: 'S1:1,S1:10,S3:1' }, devices: { type: 'string', default: '20' } } })
const SECONDS = Number(values.seconds)
const DEVICES = Number(values.devices)
const KEY = Buffer.from('hyperhub-bench-shared-device-key').toString('base64')
/** the burst (60 s of the limit at twice the limit: 60 s) and the backlog (10 s) are spent by then */
const STEADY_FROM = 75

interface Second { tier: string; second: number; reached: number; accepted: number; refused: number; limit: number }

async function d2cCounts(hub: HubProcess): Promise<{ admitted: number; queued: number; refused: number; perSecond: number }> {
  const r = await hub.rest('GET', '/hyperhub/metering')
  return r.body.throttles.d2c
}

async function runTier(hub: HubProcess, ids: string[], tierText: string): Promise<Second[]> {
  const [tier, units] = tierText.split(':')
  const set = await hub.rest('PUT', '/hyperhub/tier', { tier, units: Number(units ?? 1) })
  if (set.status !== 200) throw new Error(`tier ${tierText}: ${set.status} ${JSON.stringify(set.body)}`)
  const limit = set.body.throttles.d2c as number
  const seconds: Second[] = []
  let running = true
  const sampler = (async () => {
    let last = await d2cCounts(hub)
    for (let s = 1; running && s <= SECONDS + 5; s++) {
      await new Promise((r) => setTimeout(r, 1000 - (Date.now() % 1000)))
      const now = await d2cCounts(hub)
      const accepted = now.admitted + now.queued - last.admitted - last.queued
      const refused = now.refused - last.refused
      seconds.push({ tier: tierText, second: s, reached: accepted + refused, accepted, refused, limit })
      last = now
    }
  })()
  await runPublishers({
    target: { host: '127.0.0.1', port: hub.ports.mqttTcp, transport: 'tcp' }, devices: ids.map((id) => hubCredentials(id, KEY)),
    qos: 1, window: 10, payloadBytes: 256, rate: (2 * limit) / ids.length, warmupMs: 0, durationMs: SECONDS * 1000, connectConcurrency: 20,
    qos0Batch: 16, qos0Window: 1000, drainMs: 2000,
  })
  running = false
  await sampler
  return seconds.filter((s) => s.second <= SECONDS)
}

async function chart(rows: Second[]): Promise<Buffer> {
  const values = rows.flatMap((r) => [
    { tier: r.tier, second: r.second, series: 'reached the hub', perSecond: r.reached },
    { tier: r.tier, second: r.second, series: 'accepted', perSecond: r.accepted },
    { tier: r.tier, second: r.second, series: 'refused (connection closed)', perSecond: r.refused },
    { tier: r.tier, second: r.second, series: 'D2C limit', perSecond: r.limit },
  ])
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    data: { values },
    facet: { row: { field: 'tier', type: 'nominal', title: null } },
    spec: {
      width: 640, height: 160, mark: { type: 'line', interpolate: 'step-after' },
      encoding: {
        x: { field: 'second', type: 'quantitative', title: 'seconds since the load started (devices offer 2 × the limit)' },
        y: { field: 'perSecond', type: 'quantitative', title: 'D2C messages/s' },
        color: { field: 'series', type: 'nominal', title: null },
      },
    },
    resolve: { scale: { y: 'independent' } },
    config: { font: 'DejaVu Sans' },
  } as unknown as TopLevelSpec
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' })
  return new Resvg(await view.toSVG(), { background: 'white', font: { loadSystemFonts: true } }).render().asPng()
}

const dataDir = tempDir('hyperhub-tier-rate-')
seedPki(dataDir)
const hub = await spawnHub(dataDir)
try {
  const ids = deviceIds(DEVICES)
  await provisionDevices({ httpsPort: hub.ports.https, ownerKey: hub.ownerKey, ids, deviceKey: KEY })
  const rows: Second[] = []
  for (const tier of values.tiers!.split(',')) {
    const mine = await runTier(hub, ids, tier)
    rows.push(...mine)
    const steady = mine.filter((s) => s.second >= STEADY_FROM && s.second < SECONDS - 1)
    const mean = steady.reduce((n, s) => n + s.accepted, 0) / Math.max(1, steady.length)
    const worst = steady.reduce((m, s) => Math.max(m, Math.abs(s.accepted - s.limit) / s.limit), 0)
    console.log(`${tier}: limit ${mine[0]!.limit}/s; first 60 s accepted ${mine.filter((s) => s.second <= 60).reduce((n, s) => n + s.accepted, 0)}; seconds ${STEADY_FROM}–${SECONDS - 2} accepted mean ${mean.toFixed(1)}/s (${(((mean - mine[0]!.limit) / mine[0]!.limit) * 100).toFixed(2)} %), worst second ${(worst * 100).toFixed(1)} % off; refused ${mine.reduce((n, s) => n + s.refused, 0)}`)
  }
  const stamp = new Date().toISOString().slice(0, 19).replace(/[T:]/g, '-')
  writeFileSync(join('bench', 'results', `${stamp}-tier-rate.json`), JSON.stringify(rows, null, 1))
  writeFileSync(join('bench', 'results', `${stamp}-tier-rate.png`), await chart(rows))
  console.log(`wrote bench/results/${stamp}-tier-rate.{json,png}`)
} finally {
  hub.child.kill('SIGTERM')
  await hub.exited
}
process.exit(0)
