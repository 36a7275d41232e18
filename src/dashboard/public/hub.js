// The hub page: /metrics polled every 2 s and charted (message rates and throttle outcomes as
// per-second differences of the counters, connections and the daily quota as they are), today's
// metering, and the tier. Polling stops when the page is left; each chart keeps 300 points (10 min).
import { api, errorText, refusedForRights } from './api.js'
import { TimeChart } from './charts.js'
import { fill, h, say } from './dom.js'
import { byLabel, parsePrometheus, total } from './prometheus.js'

const POLL_MS = 2000

/** Per-second rates of counters between two polls; a counter that went back (a restart) gives no point. */
function rates(prev, now, dtSeconds) {
  const out = {}
  if (!prev || dtSeconds <= 0) return out
  for (const [k, v] of Object.entries(now)) {
    const before = prev[k]
    if (v !== undefined && before !== undefined && v >= before) out[k] = (v - before) / dtSeconds
  }
  return out
}

function table(headings, rows) {
  return h('table', { class: 'grid compact' }, h('thead', {}, h('tr', {}, headings.map((c) => h('th', {}, c)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c, k) => h('td', { class: k > 0 ? 'num' : '' }, c ?? '—'))))))
}

const fmt = (n) => (n === null || n === undefined ? '—' : Number(n).toLocaleString())

export function render(main) {
  document.title = 'Hyperhub · hub'
  let gone = false
  let timer
  const status = h('p', { class: 'status', id: 'hub-status', role: 'status' })
  const boxes = { rates: h('div', { class: 'chart', id: 'chart-rates' }), connections: h('div', { class: 'chart', id: 'chart-connections' }),
    throttles: h('div', { class: 'chart', id: 'chart-throttles' }), quota: h('div', { class: 'chart', id: 'chart-quota' }) }
  const tier = h('div', { id: 'hub-tier' }, 'Reading the tier…')
  const metering = h('div', { id: 'hub-metering' })
  main.append(h('section', {},
    h('h1', {}, 'Hub'),
    status,
    h('div', { class: 'charts' }, ...Object.values(boxes).map((b) => h('div', { class: 'card' }, b))),
    h('div', { class: 'cards' }, h('div', { class: 'card narrow' }, h('h2', {}, 'Tier'), tier), h('div', { class: 'card widest' }, h('h2', {}, 'Today\'s metering'), metering))))
  const charts = {
    rates: new TimeChart(boxes.rates, { title: 'Messages per second', height: 170 }),
    connections: new TimeChart(boxes.connections, { title: 'Device connections', height: 170 }),
    throttles: new TimeChart(boxes.throttles, { title: 'Throttled operations per second, by outcome', height: 170 }),
    quota: new TimeChart(boxes.quota, { title: 'Daily quota (messages)', height: 170 }),
  }
  let prev

  async function poll() {
    const [m, meter] = await Promise.all([api('GET', '/metrics'), api('GET', '/hyperhub/metering')])
    if (gone) return
    if (!m.ok) say(status, `/metrics: ${errorText(m)}`, 'error')
    else {
      const metrics = parsePrometheus(typeof m.body === 'string' ? m.body : '')
      const t = Date.now() / 1000
      const counters = {
        'telemetry in': total(metrics, 'hyperhub_telemetry_received_total') ?? 0,
        'to devices': total(metrics, 'hyperhub_device_messages_sent_total') ?? 0,
      }
      const outcomes = { admitted: 0, queued: 0, refused: 0, ...byLabel(metrics, 'hyperhub_throttle_operations_total', 'outcome') }
      if (prev) {
        const dt = t - prev.t
        charts.rates.push(t, rates(prev.counters, counters, dt))
        charts.throttles.push(t, rates(prev.outcomes, outcomes, dt))
      }
      prev = { t, counters, outcomes }
      const connected = {}
      for (const s of metrics.get('hyperhub_connections') ?? []) if (s.labels.state === 'connected') connected[s.labels.transport ?? '?'] = s.value
      connected.opening = total(metrics, 'hyperhub_connections', (l) => l.state === 'opening') ?? 0
      connected.all = total(metrics, 'hyperhub_connections', (l) => l.state === 'connected') ?? 0
      charts.connections.push(t, connected)
      const quota = { used: total(metrics, 'hyperhub_quota_messages_used') ?? 0 }
      const perDay = total(metrics, 'hyperhub_quota_messages_per_day')
      // the gauge reads 0 on the unlimited tier (there is no quota of zero)
      if (perDay !== undefined && perDay > 0) quota['per day'] = perDay
      charts.quota.push(t, quota)
      const n = (count, one) => `${fmt(count)} ${one}${count === 1 ? '' : 's'}`
      say(status, `Updated ${new Date().toLocaleTimeString()} · ${n(counters['telemetry in'], 'message')} received · ${n(connected.all, 'device')} connected`, 'ok')
    }
    if (meter.ok) showMetering(meter.body)
    else fill(metering, h('p', { class: 'status error' }, errorText(meter)))
    // a credential without the right (statistics/read, ServiceConnect) will not get it by asking again
    if (refusedForRights(m) && refusedForRights(meter)) return
    timer = setTimeout(poll, POLL_MS)
  }

  function showMetering(r) {
    const q = r.quota ?? {}
    fill(metering,
      h('p', { id: 'quota-line' }, `${fmt(q.used)} of ${q.quota === null || q.quota === undefined ? 'unlimited' : fmt(q.quota)} messages used on ${q.day ?? '—'} (UTC), billed in ${fmt(q.chunkBytes)}-byte chunks`),
      h('div', { class: 'cards' },
        table(['Operation', 'Messages', 'Operations', 'Refused'], Object.entries(q.operations ?? {}).map(([k, v]) => [k, fmt(v.messages), fmt(v.operations), fmt(v.refused)])),
        table(['Throttle', 'Limit/s', 'Admitted', 'Queued', 'Refused'], Object.entries(r.throttles ?? {}).map(([k, v]) => [k, v.perSecond === null ? 'none' : fmt(v.perSecond), fmt(v.admitted), fmt(v.queued), fmt(v.refused)]))))
  }

  async function loadTier() {
    const r = await api('GET', '/hyperhub/tier')
    if (gone) return
    if (!r.ok) return fill(tier, h('p', { class: 'status error' }, `${errorText(r)} (the tier is the owner's to read)`))
    const limits = Object.entries(r.body.throttles ?? {})
    fill(tier,
      h('p', { class: 'big', id: 'tier-name' }, `${r.body.tier} × ${r.body.units}`),
      h('p', {}, r.body.basic ? 'A Basic tier: no twins, direct methods or cloud-to-device messages.' : 'Twins, direct methods and cloud-to-device messages available.'),
      limits.length ? table(['Throttle', 'Per second'], limits.map(([k, v]) => [k, fmt(v)])) : h('p', {}, 'No throttles: nothing is limited.'))
  }

  // the first call decides whether the credentials work: one at a time until then
  void poll().then(() => { if (!gone) void loadTier() })
  return () => {
    gone = true
    clearTimeout(timer)
    for (const c of Object.values(charts)) c.destroy()
  }
}
