// Route-condition evaluation: the WASM VM (src/wasm/wasm-route-vm.ts) vs the JS reference
// interpreter (src/routing/condition-interpreter.ts), 10 routes over a ~1 KB JSON telemetry message.
// Reports the per-message preparation (JSON parse + property maps; for WASM also the message image
// written into module memory) separately, the 10 route evaluations alone, and both together.
// Run: node --import tsx bench/route-eval.bench.ts [--time ms]
import { Bench } from 'tinybench'
import { compileCondition } from '../src/routing/condition-compiler.js'
import { evaluateCondition } from '../src/routing/condition-interpreter.js'
import { prepareMessage, type RouteMessage } from '../src/routing/route-message.js'
import { WasmRouteSet } from '../src/wasm/wasm-route-vm.js'

const timeArg = process.argv.indexOf('--time')
const time = timeArg > 0 ? Number(process.argv[timeArg + 1]) : 1000

const ROUTES = [
  '$body.temperature > 30',
  "$body.device.status = 'alarm' AND $connectionDeviceId = 'thermostat-1'",
  "level = 'critical'",
  'as_number(severity) >= 3',
  "$contentType = 'application/json' AND is_defined($body.location.lat)",
  '$body.readings[2].value < 0',
  "starts_with($connectionDeviceId, 'thermo') AND ($body.humidity > 80 OR $body.humidity < 10)",
  "$twin.tags.region = 'eu' AND $body.battery < 20",
  "lower($body.device.firmware) = 'v2.1.0'",
  "NOT (processingPath IN ['cold', 'archive'])",
]

const body = {
  temperature: 27.25, humidity: 45.5, pressure: 1013.2, battery: 76, rssi: -67,
  device: { status: 'ok', firmware: 'V2.1.0', model: 'TH-2000', serial: 'SN-0000123456', uptimeSeconds: 86400 },
  location: { lat: 47.6397, lon: -122.1281, alt: 50, accuracy: 3.5, source: 'gps' },
  readings: Array.from({ length: 8 }, (_, i) => ({ ts: `2026-11-27T10:0${i}:00Z`, value: 20 + i * 0.75, unit: 'C', quality: 'good' })),
  diagnostics: { cpu: 0.31, memFree: 12345678, errors: [], lastReset: 'watchdog', notes: 'nominal operation; no alarms raised' },
}
const json = JSON.stringify(body)
const message: RouteMessage = {
  systemProperties: { contentType: 'application/json', contentEncoding: 'utf-8', messageId: 'msg-000123', 'iothub-connection-device-id': 'thermostat-1', 'iothub-enqueuedtime': '2026-11-27T10:00:00Z' },
  appProperties: { level: 'info', severity: '2', processingPath: 'hot' },
  body: Buffer.from(json),
  twin: { tags: { region: 'us', building: '43' }, properties: { desired: {}, reported: {} } },
}

const programs = ROUTES.map((r) => compileCondition(r))
const set = new WasmRouteSet(programs)
const prepared = prepareMessage(message)
set.loadMessage(prepared)
const jsResults = programs.map((p) => evaluateCondition(p, prepared) === true)
const wasmResults = set.matchAll()
if (jsResults.join() !== wasmResults.join()) throw new Error(`engines disagree: ${jsResults} vs ${wasmResults}`)
let sink = 0

const bench = new Bench({ name: 'route-eval', time, warmup: true })
bench
  .add('prepare message | JS (JSON.parse + property maps)', () => { sink += prepareMessage(message).app.size })
  .add('prepare message | WASM (same + message image into module memory)', () => { sink += set.loadMessage(message).app.size })
  .add('10 routes, message prepared | JS interpreter', () => { for (const p of programs) if (evaluateCondition(p, prepared) === true) sink++ })
  .add('10 routes, message prepared | WASM, one call for all 10 (matchAll)', () => { for (const m of set.matchAll()) if (m) sink++ })
  .add('10 routes, message prepared | WASM, one call per route (matches)', () => { for (let k = 0; k < 10; k++) if (set.matches(k)) sink++ })
  .add('prepare + 10 routes | JS', () => { const m = prepareMessage(message); for (const p of programs) if (evaluateCondition(p, m) === true) sink++ })
  .add('prepare + 10 routes | WASM (matchAll)', () => { set.loadMessage(message); for (const m of set.matchAll()) if (m) sink++ })
set.loadMessage(prepared)
await bench.run()

console.log(`\nbody ${json.length} bytes; ${ROUTES.length} routes; node ${process.version}; matches: ${jsResults.map(Number).join('')}`)
console.log('| case | implementation | ops/s | mean ns | ± | route evaluations/s |')
console.log('|---|---|---:|---:|---:|---:|')
for (const t of bench.tasks) {
  const r = t.result
  if (r.state !== 'completed') throw new Error(`${t.name}: ${r.state}`)
  const [group, impl] = t.name.split(' | ')
  const routesPerOp = group!.includes('10 routes') ? 10 : 0
  const ops = 1000 / r.period
  console.log(`| ${group} | ${impl} | ${Math.round(ops).toLocaleString('en')} | ${Math.round(r.period * 1e6)} | ${r.latency.rme.toFixed(1)}% | ${routesPerOp ? Math.round(ops * routesPerOp).toLocaleString('en') : ''} |`)
}
if (sink < 0) console.log(sink)
