// A PNG of throughput and p99 latency per scenario, hub vs peers: a Vega-Lite spec rendered to SVG
// by vega, then to PNG by resvg (all from the npm registry, no native build).
import { Resvg } from '@resvg/resvg-js'
import * as vega from 'vega'
import { compile, type TopLevelSpec } from 'vega-lite'
import type { RunRecord } from './report.js'
import { groupRows } from './report.js'

export async function renderChart(records: RunRecord[]): Promise<Buffer | null> {
  const rows: { scenario: string; server: string; metric: string; value: number }[] = []
  for (const name of [...new Set(records.map((r) => r.scenario))]) {
    for (const g of groupRows(records, name)) {
      const sorted = [...g].sort((a, b) => Number(a.result.acceptedPerSec ?? a.result.connectPerSec ?? 0) - Number(b.result.acceptedPerSec ?? b.result.connectPerSec ?? 0))
      const r = sorted[Math.floor((sorted.length - 1) / 2)]!
      const server = `${r.label} (${r.transport})`
      const rate = r.result.deliveredPerSec ?? r.result.acceptedPerSec ?? r.result.connectPerSec
      const p99 = r.result.e2eP99 ?? r.result.ackP99 ?? r.result.connackP99
      if (typeof rate === 'number') rows.push({ scenario: name, server, metric: name.startsWith('storm') || name.startsWith('idle') ? 'connections/s' : 'messages/s', value: rate })
      if (typeof p99 === 'number') rows.push({ scenario: name, server, metric: 'p99 latency (ms)', value: p99 })
    }
  }
  if (rows.length === 0) return null
  const bars = (metric: string, title: string) => ({
    transform: [{ filter: metric === 'rate' ? "datum.metric !== 'p99 latency (ms)'" : "datum.metric === 'p99 latency (ms)'" }],
    mark: 'bar',
    encoding: {
      y: { field: 'server', type: 'nominal', title: null },
      x: { field: 'value', type: 'quantitative', title },
      color: { field: 'server', type: 'nominal', legend: null },
      row: { field: 'scenario', type: 'nominal', title: null, header: { labelAngle: 0, labelAlign: 'left' } },
    },
    // scenarios differ by orders of magnitude, and each lists only the servers it ran
    resolve: { scale: { x: 'independent', y: 'independent' } },
  })
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    data: { values: rows },
    hconcat: [bars('rate', 'throughput (messages/s, or connections/s for storms)'), bars('p99', 'p99 latency, ms (PUBACK, end-to-end or CONNACK)')],
    config: { font: 'DejaVu Sans', view: { stroke: null } },
  } as unknown as TopLevelSpec
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' })
  const svg = await view.toSVG()
  return new Resvg(svg, { background: 'white', font: { loadSystemFonts: true } }).render().asPng()
}
