// Device telemetry over HTTPS: 100 devices, each with a keep-alive connection, posting one 256-byte
// message at a time (the next once the 204 came, i.e. once the previous one is committed), against
// the real hub process. Requests per second and hub CPU time per message, 3 runs.
// Usage: npx tsx bench/https-telemetry.ts [--runs 3 --seconds 5]
// Loopback only; every loop is bounded in count and time.
import https from 'node:https'
import { parseArgs } from 'node:util'
import { createSasToken } from '../src/auth/sas-token.js'
import { spawnHub } from '../test/helpers/hub-process.js'
import { seedPki, tempDir } from '../test/helpers/test-hub.js'
import { deviceIds, provisionDevices } from './load/provision.js'
import { cpuMs } from './load/proc-stats.js'

const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' }, seconds: { type: 'string', default: '5' } } })
const KEY = Buffer.from('hyperhub-bench-shared-device-key').toString('base64')
const BODY = Buffer.alloc(256, 0x61)

const dataDir = tempDir('hyperhub-https-bench-')
seedPki(dataDir)
const hub = await spawnHub(dataDir)
try {
  const ids = deviceIds(100)
  await provisionDevices({ httpsPort: hub.ports.https, ownerKey: hub.ownerKey, ids, deviceKey: KEY })
  const rows: { rate: number; cpuUs: number; failed: number }[] = []
  for (let run = 1; run <= Number(values.runs); run++) {
    let done = 0, failed = 0
    const until = Date.now() + 1000 + Number(values.seconds) * 1000
    let counting = false
    let cpu0 = 0, t0 = 0
    setTimeout(() => { counting = true; cpu0 = cpuMs(hub.child.pid!); t0 = performance.now() }, 1000)
    await Promise.all(ids.map(async (id) => {
      const agent = new https.Agent({ keepAlive: true, maxSockets: 1 })
      const token = createSasToken(encodeURIComponent(`localhost/devices/${id}`), KEY, undefined, 3600)
      while (Date.now() < until) {
        const status = await new Promise<number>((resolve) => {
          const req = https.request({ host: '127.0.0.1', port: hub.ports.https, servername: 'localhost', ca: hub.ca, agent, method: 'POST',
            path: `/devices/${id}/messages/events?api-version=2021-04-12`, headers: { Authorization: token, 'Content-Length': BODY.length } }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode!)) })
          req.on('error', () => resolve(0))
          req.end(BODY)
        })
        if (!counting) continue
        if (status === 204) done++
        else failed++
      }
      agent.destroy()
    }))
    const seconds = (performance.now() - t0) / 1000
    const cpu = cpuMs(hub.child.pid!) - cpu0
    rows.push({ rate: done / seconds, cpuUs: (cpu * 1000) / done, failed })
    console.log(`run ${run}: ${Math.round(done / seconds)} requests/s, hub ${((cpu * 1000) / done).toFixed(1)} µs CPU/msg, ${failed} failed`)
  }
  const range = (xs: number[], d = 0) => `${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)}`
  console.log(`\n| HTTPS telemetry, 100 devices, keep-alive, one in flight each | requests/s (range) | hub CPU µs/msg (range) |\n|---|---|---|\n| ${rows.length} runs | ${range(rows.map((r) => r.rate))} | ${range(rows.map((r) => r.cpuUs), 1)} |`)
} finally {
  hub.child.kill('SIGTERM')
  await hub.exited
}
process.exit(0)
