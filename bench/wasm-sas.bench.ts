// Verifying a device SAS token: JS (node:crypto) vs WASM, uncached, and WASM behind the
// verified-token cache.  Run: node --import tsx bench/wasm-sas.bench.ts [--time ms]
import { randomBytes } from 'node:crypto'
import { Bench } from 'tinybench'
import { createSasToken, parseSasToken, verifySasToken } from '../src/auth/sas-token.js'
import { SasVerifierCache } from '../src/wasm/sas-verifier-cache.js'
import { verifySasTokenWasm } from '../src/wasm/wasm-sas.js'

const timeArg = process.argv.indexOf('--time')
const time = timeArg > 0 ? Number(process.argv[timeArg + 1]) : 1500

// a device with primary and secondary keys; the SDK signs with the primary
const keys = [randomBytes(32).toString('base64'), randomBytes(32).toString('base64')]
const raw = createSasToken('myhub.azure-devices.net%2Fdevices%2Fthermostat-1', keys[0]!, undefined, 3600)
const token = parseSasToken(raw)
const bySecondary = parseSasToken(createSasToken('myhub.azure-devices.net%2Fdevices%2Fthermostat-1', keys[1]!, undefined, 3600))
const cache = new SasVerifierCache()
cache.verify(raw, keys)

const rows: Array<[group: string, impl: string, fn: () => void]> = [
  ['verify, primary key matches (1 HMAC)', 'JS verifySasToken', () => verifySasToken(token, keys)],
  ['verify, primary key matches (1 HMAC)', 'WASM verifySasTokenWasm', () => verifySasTokenWasm(token, keys)],
  ['verify, secondary key matches (2 HMACs)', 'JS verifySasToken', () => verifySasToken(bySecondary, keys)],
  ['verify, secondary key matches (2 HMACs)', 'WASM verifySasTokenWasm', () => verifySasTokenWasm(bySecondary, keys)],
  ['token text to verdict (parse + verify)', 'JS parseSasToken + verifySasToken', () => verifySasToken(parseSasToken(raw), keys)],
  ['token text to verdict (parse + verify)', 'WASM parseSasToken + verifySasTokenWasm', () => verifySasTokenWasm(parseSasToken(raw), keys)],
  ['token text to verdict (parse + verify)', 'WASM SasVerifierCache hit', () => { cache.verify(raw, keys) }],
]
const bench = new Bench({ name: 'sas', time, warmup: true })
for (const [group, impl, fn] of rows) bench.add(`${group} | ${impl}`, fn)
await bench.run()

console.log('\n| case | implementation | ops/s | mean ns | ± | JS ÷ this (speed-up, >1 = faster than JS) |')
console.log('|---|---|---:|---:|---:|---:|')
for (const [group] of rows.filter((r, i, all) => all.findIndex((o) => o[0] === r[0]) === i)) {
  const tasks = bench.tasks.filter((t) => t.name.startsWith(`${group} |`))
  const js = tasks[0]!.result
  for (const t of tasks) {
    const r = t.result
    if (r.state !== 'completed' || js.state !== 'completed') throw new Error(`${t.name}: ${r.state}`)
    const impl = t.name.split(' | ')[1]
    console.log(`| ${group} | ${impl} | ${Math.round(1000 / r.period).toLocaleString('en')} | ${Math.round(r.period * 1e6)} | ${r.latency.rme.toFixed(1)}% | ${t === tasks[0] ? '' : (js.period / r.period).toFixed(2)} |`)
  }
}
