// Telemetry throughput with message routing: the real hub process with no custom routes (the plain
// path) and with 10 enabled routes (evaluated in the shards by the WASM route VM, one image per
// message, all routes in one call), side by side. QoS 1, 100 devices over TCP, 256-byte bodies.
//   node --import tsx bench/routing-throughput.ts [--duration-ms 10000] [--runs 1]
// Loopback only; every loop is bounded (the publisher's window and duration).
import https from 'node:https'
import { runPublish, type PublishScenario, type Result } from './load/orchestrate.js'
import { startHyperhub, type RunningServer } from './load/servers.js'

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(name)
  return i >= 0 ? Number(process.argv[i + 1]) : fallback
}
const durationMs = arg('--duration-ms', 10_000)
const runs = arg('--runs', 1)

const scenario: PublishScenario = {
  kind: 'publish', transport: 'tcp', devices: 100, qos: 1, window: 10, payloadBytes: 256, rate: 0,
  warmupMs: 2000, durationMs, procs: 1, reader: false,
}

// nine selective routes (application property, system property, body) and one catch-all, all to the
// built-in endpoint: every message is evaluated against all ten and stored once
const ROUTES = [
  ...Array.from({ length: 3 }, (_, i) => `level = 'critical-${i}'`),
  ...Array.from({ length: 3 }, (_, i) => `$connectionDeviceId = 'nobody-${i}' OR $contentType = 'text/x-${i}'`),
  ...Array.from({ length: 3 }, (_, i) => `$body.temperature > ${1000 + i}`),
  'true',
].map((condition, i) => ({ name: `route-${i}`, condition, endpointNames: ['events'] }))

function putRouting(server: RunningServer, body: unknown): Promise<void> {
  const { httpsPort, ca, token } = server.reader() as { httpsPort: number; ca: string; token: string }
  const payload = JSON.stringify(body)
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: '127.0.0.1', port: httpsPort, servername: 'localhost', method: 'PUT', path: '/routing', ca,
      headers: { Authorization: token, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) },
    }, (res) => {
      let text = ''
      res.on('data', (d: Buffer) => { text += d })
      res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`PUT /routing: ${res.statusCode} ${text}`))))
    })
    req.on('error', reject)
    req.end(payload)
  })
}

async function measure(routes: boolean): Promise<Result> {
  const server = await startHyperhub()
  try {
    if (routes) await putRouting(server, { routes: ROUTES })
    return await runPublish(server, scenario)
  } finally {
    await server.stop()
  }
}

const rows: { label: string; result: Result }[] = []
for (let r = 0; r < runs; r++) {
  rows.push({ label: 'no custom routes', result: await measure(false) })
  rows.push({ label: '10 routes (WASM VM)', result: await measure(true) })
}
const cols = ['acceptedPerSec', 'ackP50', 'ackP99', 'serverCpu', 'serverRssMb'] as const
console.log(['setup'.padEnd(22), ...cols.map((c) => c.padStart(15))].join(''))
for (const { label, result } of rows) console.log([label.padEnd(22), ...cols.map((c) => String(result[c] ?? '').padStart(15))].join(''))
