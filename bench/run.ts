// The benchmark suite: `npm run bench` (quick, < 3 min), `npm run bench:full`, `npm run bench:peers`.
// Each run starts a fresh server, drives it from separate generator processes over loopback, and
// stops it; runs are interleaved across servers. Results land in bench/results/ (JSON + Markdown),
// the latest table in bench/RESULTS.md, and a chart in bench/results/latest.png.
//   tsx bench/run.ts --suite quick|full|peers|headline|io-threads [--scenario a,b] [--servers hyperhub,aedes] [--runs N] [--duration S] [--no-report]
import { cpus, totalmem } from 'node:os'
import { mkdirSync, writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { runPublish, runStorm, type Result, type Scenario } from './load/orchestrate.js'
import { startAedes, startHyperhub, startMosquitto, versions, type RunningServer } from './load/servers.js'
import { SCENARIOS, SUITES, type ServerKey } from './scenarios.js'
import { renderReport, type RunRecord } from './report/report.js'

const { values } = parseArgs({
  options: {
    suite: { type: 'string', default: 'quick' }, scenario: { type: 'string' }, servers: { type: 'string' },
    runs: { type: 'string' }, duration: { type: 'string' }, 'no-report': { type: 'boolean', default: false },
  },
})
const suite = SUITES[values.suite!]
if (!suite) throw new Error(`unknown suite ${values.suite}; one of ${Object.keys(SUITES).join(', ')}`)
const names = values.scenario ? values.scenario.split(',') : suite.scenarios
const onlyServers = (values.servers?.split(',') ?? suite.servers) as ServerKey[] | undefined
const runs = Number(values.runs ?? suite.runs)

const start: Record<ServerKey, () => Promise<RunningServer>> = {
  hyperhub: () => startHyperhub(),
  'hyperhub-power': () => startHyperhub(['--durability', 'power']),
  // the JavaScript hot paths instead of WASM, for the side-by-side comparison
  'hyperhub-js': () => startHyperhub(['--mqtt-framer', 'js', '--sas-verifier', 'js']),
  'hyperhub-io0': () => startHyperhub(['--io-threads', '0']),
  'hyperhub-io1': () => startHyperhub(['--io-threads', '1']),
  'hyperhub-io2': () => startHyperhub(['--io-threads', '2']),
  aedes: () => startAedes(),
  mosquitto: () => startMosquitto(),
  'mosquitto-unlimited': () => startMosquitto(true),
}

const plan: { run: number; scenario: string; server: ServerKey; transport: string }[] = []
for (let run = 1; run <= runs; run++) {
  for (const name of names) {
    const s = SCENARIOS.find((x) => x.name === name)
    if (!s) throw new Error(`unknown scenario ${name}`)
    for (const [server, transports] of Object.entries(s.servers) as [ServerKey, string[]][]) {
      if (onlyServers && !onlyServers.includes(server)) continue
      for (const transport of transports) plan.push({ run, scenario: name, server, transport })
    }
  }
}

const records: RunRecord[] = []
const began = Date.now()
for (const [i, step] of plan.entries()) {
  const named = SCENARIOS.find((x) => x.name === step.scenario)!
  let scenario: Scenario = { ...named.scenario, transport: step.transport as Scenario['transport'] }
  if (scenario.kind === 'publish') {
    if (values.duration) scenario = { ...scenario, durationMs: Number(values.duration) * 1000 }
    else if (suite.shorten) scenario = { ...scenario, warmupMs: 1000, durationMs: 5000 }
    if (scenario.rate < 0) {
      const peak = records.find((r) => r.scenario === 'qos1-100' && r.server === step.server && r.transport === step.transport && r.run === step.run)
      if (!peak?.result.acceptedPerSec) { console.log(`skip ${step.scenario} ${step.server}: no qos1-100 figure in this run`); continue }
      scenario = { ...scenario, rate: Math.max(1, Math.round((-scenario.rate * Number(peak.result.acceptedPerSec)) / scenario.devices)) }
    }
  }
  const elapsed = Math.round((Date.now() - began) / 1000)
  process.stdout.write(`[${i + 1}/${plan.length}, ${elapsed}s] ${step.scenario} · ${step.server} · ${step.transport} · run ${step.run} … `)
  const server = await start[step.server]()
  let result: Result
  try {
    result = scenario.kind === 'publish' ? await runPublish(server, scenario) : await runStorm(server, scenario)
  } catch (e) {
    result = { error: (e as Error).message }
  } finally {
    await server.stop()
  }
  const rec: RunRecord = { ...step, label: server.label, rate: scenario.kind === 'publish' ? scenario.rate : 0, result }
  records.push(rec)
  console.log(JSON.stringify(result))
}

const date = new Date().toISOString()
const machine = { cpus: cpus().length, model: cpus()[0]?.model ?? '?', memoryGb: Math.round(totalmem() / 2 ** 30), kernel: process.platform }
const stamp = date.slice(0, 19).replace(/[:T]/g, '-')
mkdirSync('bench/results', { recursive: true })
const data = { date, suite: values.suite, command: `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim(), machine, versions: versions(), records }
writeFileSync(`bench/results/${stamp}-${values.suite}.json`, JSON.stringify(data, null, 2))
if (!values['no-report']) {
  const md = await renderReport(data)
  writeFileSync(`bench/results/${stamp}-${values.suite}.md`, md)
  console.log(`\nresults: bench/results/${stamp}-${values.suite}.{json,md}`)
}
