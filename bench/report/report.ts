// Turns a suite's records into Markdown tables (median of runs, peers side by side, ratios to the
// hub), a chart, and the "latest suite run" section of bench/RESULTS.md.
import { readFileSync, writeFileSync } from 'node:fs'
import type { Result } from '../load/orchestrate.js'
import { SCENARIOS } from '../scenarios.js'
import { renderChart } from './chart.js'

export interface RunRecord { run: number; scenario: string; server: string; transport: string; label: string; rate: number; result: Result }

export interface SuiteData {
  date: string
  suite: string | undefined
  command: string
  machine: Record<string, unknown>
  versions: Record<string, string>
  records: RunRecord[]
}


const fmt = (v: unknown, digits = 0) => (v === null || v === undefined || v === '' ? '–' : typeof v === 'number' ? v.toLocaleString('en-US', { maximumFractionDigits: digits }) : String(v))

/** The run whose headline metric is the median, with the min–max of that metric. */
function median(recs: RunRecord[], metric: string): { rec: RunRecord; range: string } {
  const sorted = [...recs].sort((a, b) => Number(a.result[metric] ?? 0) - Number(b.result[metric] ?? 0))
  const rec = sorted[Math.floor((sorted.length - 1) / 2)]!
  const range = recs.length > 1 ? ` [${fmt(sorted[0]!.result[metric])}–${fmt(sorted[sorted.length - 1]!.result[metric])}]` : ''
  return { rec, range }
}

export function groupRows(records: RunRecord[], scenario: string) {
  const groups = new Map<string, RunRecord[]>()
  for (const r of records.filter((x) => x.scenario === scenario)) {
    const k = `${r.server}|${r.transport}`
    groups.set(k, [...(groups.get(k) ?? []), r])
  }
  return [...groups.values()]
}

function publishTable(records: RunRecord[], scenario: string): string {
  const rows = groupRows(records, scenario)
  const hub = rows.find((g) => g[0]!.server === 'hyperhub' && g[0]!.transport === 'tcp')
  const hubRate = hub ? Number(median(hub, 'acceptedPerSec').rec.result.acceptedPerSec) : NaN
  const withReader = rows.some((g) => g[0]!.result.deliveredPerSec !== undefined)
  const head = ['server', 'transport', 'accepted msg/s', 'ack p50 / p99 / p99.9 ms', ...(withReader ? ['delivered msg/s', 'lost', 'e2e p50 / p99 / p99.9 ms'] : []), 'server CPU %', 'generator CPU %', 'server RSS MB', 'hub TCP ÷ this']
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`]
  for (const g of rows) {
    const { rec, range } = median(g, 'acceptedPerSec')
    const r = rec.result
    if (r.error) { lines.push(`| ${rec.label} | ${rec.transport} | error: ${r.error} |`); continue }
    const ratio = hubRate && Number(r.acceptedPerSec) ? (hubRate / Number(r.acceptedPerSec)).toFixed(2) + '×' : '–'
    lines.push(`| ${rec.label} | ${rec.transport} | ${fmt(r.acceptedPerSec)}${range} | ${fmt(r.ackP50, 2)} / ${fmt(r.ackP99, 2)} / ${fmt(r.ackP999, 2)} | `
      + (withReader ? `${fmt(r.deliveredPerSec)} | ${fmt(r.lost)} | ${fmt(r.e2eP50, 2)} / ${fmt(r.e2eP99, 2)} / ${fmt(r.e2eP999, 2)} | ` : '')
      + `${fmt(r.serverCpu)} | ${fmt(r.generatorCpu)} | ${fmt(r.serverRssMb, 1)} | ${ratio} |`)
  }
  return lines.join('\n')
}

function stormTable(records: RunRecord[], scenario: string): string {
  const head = ['server', 'transport', 'connected', 'connect/s', 'CONNACK p50 / p99 ms', 'bytes per idle connection', 'server RSS MB', 'alive after hold', 'server CPU %', 'generator CPU %']
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`]
  for (const g of groupRows(records, scenario)) {
    const { rec, range } = median(g, 'connectPerSec')
    const r = rec.result
    if (r.error) { lines.push(`| ${rec.label} | ${rec.transport} | error: ${r.error} |`); continue }
    lines.push(`| ${rec.label} | ${rec.transport} | ${fmt(r.connected)} | ${fmt(r.connectPerSec)}${range} | ${fmt(r.connackP50, 2)} / ${fmt(r.connackP99, 2)} | ${fmt(r.bytesPerConnection)} | ${fmt(r.serverRssMb, 1)} | ${fmt(r.alive)} | ${fmt(r.serverCpu)} | ${fmt(r.generatorCpu)} |`)
  }
  return lines.join('\n')
}

export async function renderReport(data: SuiteData): Promise<string> {
  const stamp = data.date.slice(0, 19).replace(/[:T]/g, '-')
  const chartFile = `results/${stamp}-${data.suite}.png`
  const parts = [
    `### Suite \`${data.suite}\`, ${data.date.slice(0, 16).replace('T', ' ')} UTC`,
    '',
    `Command: \`${data.command}\` · machine: ${data.machine.cpus} × ${data.machine.model}, ${data.machine.memoryGb} GiB · versions: ${Object.entries(data.versions).map(([k, v]) => `${k} ${v}`).join(', ')}.`,
    'Every server was started fresh for each run and driven over 127.0.0.1 by separate generator processes; figures are medians of the runs with [min–max]. "hub TCP ÷ this" is Hyperhub over TCP divided by that row (above 1: the hub is faster). CPU is % of one core over the measurement window.',
    '',
  ]
  for (const name of [...new Set(data.records.map((r) => r.scenario))]) {
    const s = SCENARIOS.find((x) => x.name === name)!
    const rate = data.records.find((r) => r.scenario === name)?.rate
    parts.push(`#### ${name}: ${s.what}${rate && rate > 0 && name === 'e2e-half-peak' ? ` (${rate} msg/s per device)` : ''}`, '', s.scenario.kind === 'storm' ? stormTable(data.records, name) : publishTable(data.records, name), '')
  }
  const png = await renderChart(data.records)
  if (png) {
    writeFileSync(`bench/${chartFile}`, png)
    writeFileSync('bench/results/latest.png', png)
    parts.push(`![throughput and p99 latency per scenario](${chartFile})`, '')
  }
  const md = parts.join('\n')
  // each suite keeps its own section of bench/RESULTS.md, replaced by its next run
  const begin = `<!-- suite:${data.suite}:begin -->`
  const end = `<!-- suite:${data.suite}:end -->`
  const path = 'bench/RESULTS.md'
  const current = readFileSync(path, 'utf8')
  const section = `${begin}\n${md}\n${end}`
  const at = current.indexOf(begin)
  const until = current.indexOf(end)
  writeFileSync(path, at >= 0 && until > at ? current.slice(0, at) + section + current.slice(until + end.length) : `${current.trimEnd()}\n\n${section}\n`)
  return md
}
