// Summarises .cpuprofile files (from node --cpu-prof): the functions with the most self time, per thread.
// Usage: tsx bench/profile-summary.ts DIR_OR_FILES... [--top 25]
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'

interface Node { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }
interface Profile { nodes: Node[]; samples: number[]; timeDeltas: number[] }

const args = process.argv.slice(2)
const topAt = args.indexOf('--top')
const top = topAt >= 0 ? Number(args.splice(topAt, 2)[1]) : 25
const files = args.flatMap((a) => (statSync(a).isDirectory() ? readdirSync(a).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(a, f)) : [a]))
for (const file of files) {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile
  const selfTime = new Map<number, number>()
  p.samples.forEach((id, i) => selfTime.set(id, (selfTime.get(id) ?? 0) + (p.timeDeltas[i] ?? 0)))
  const byName = new Map<string, number>()
  let total = 0, idle = 0
  for (const n of p.nodes) {
    const t = selfTime.get(n.id) ?? 0
    total += t
    if (n.callFrame.functionName === '(idle)') { idle += t; continue }
    const where = n.callFrame.url ? ` ${n.callFrame.url.split('/').slice(-2).join('/')}:${n.callFrame.lineNumber + 1}` : ''
    const name = `${n.callFrame.functionName || '(anonymous)'}${where}`
    byName.set(name, (byName.get(name) ?? 0) + t)
  }
  const busy = total - idle
  console.log(`\n${file}: ${(total / 1e6).toFixed(1)} s sampled, ${((100 * busy) / total).toFixed(0)} % busy`)
  for (const [name, t] of [...byName].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`${((100 * t) / busy).toFixed(1).padStart(5)} % of busy  ${name}`)
  }
}
