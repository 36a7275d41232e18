// Prometheus' text exposition format, as far as the hub's /metrics writes it: one sample a line,
// `name{label="value",…} value`, comments and HELP/TYPE lines skipped.

const LINE = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$/
const LABEL = /([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g

function number(text) {
  if (text === '+Inf') return Infinity
  if (text === '-Inf') return -Infinity
  return Number(text)
}

const unescape = (v) => v.replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c))

/** name → [{ labels, value }] */
export function parsePrometheus(text) {
  const out = new Map()
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) continue
    const m = LINE.exec(line)
    if (!m) continue
    const labels = {}
    for (const l of (m[2] ?? '').matchAll(LABEL)) labels[l[1]] = unescape(l[2])
    if (!out.has(m[1])) out.set(m[1], [])
    out.get(m[1]).push({ labels, value: number(m[3]) })
  }
  return out
}

/** The sum of a metric's samples (those `keep` accepts), or undefined when it has none. */
export function total(metrics, name, keep = () => true) {
  const samples = (metrics.get(name) ?? []).filter((s) => keep(s.labels))
  return samples.length === 0 ? undefined : samples.reduce((a, s) => a + s.value, 0)
}

/** label value → the sum of the samples with it. */
export function byLabel(metrics, name, label) {
  const out = {}
  for (const s of metrics.get(name) ?? []) {
    const k = s.labels[label] ?? ''
    out[k] = (out[k] ?? 0) + s.value
  }
  return out
}
