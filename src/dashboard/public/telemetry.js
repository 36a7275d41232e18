// Live telemetry of one device from the event stream (wss://host/messages/events/stream, from
// latest): events of other devices are dropped here, the numeric top-level fields of JSON bodies are
// plotted, and the last events listed with their properties. What the page keeps is bounded (points,
// rows, series, body text); the socket closes when the page is left.
import { streamToken } from './api.js'
import { TimeChart } from './charts.js'
import { fill, h, say } from './dom.js'

const MAX_POINTS = 300
const MAX_ROWS = 20
const MAX_BODY_CHARS = 2000
const DEVICE_ID = 'iothub-connection-device-id'

function decodeBody(base64) {
  try {
    const bytes = Uint8Array.from(atob(base64 ?? ''), (c) => c.charCodeAt(0))
    return new TextDecoder('utf-8').decode(bytes)
  } catch {
    return ''
  }
}

/** The numeric top-level fields of a JSON object body. */
function numericFields(text) {
  let v
  try { v = JSON.parse(text) } catch { return {} }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return {}
  const out = {}
  for (const [k, x] of Object.entries(v)) if (typeof x === 'number' && Number.isFinite(x)) out[k] = x
  return out
}

const clip = (s, n) => (s.length > n ? `${s.slice(0, n)}…` : s)

/** Starts following `deviceId` into `container`; returns the function that stops it. */
export function followTelemetry(container, deviceId) {
  const status = h('p', { class: 'status', id: 'telemetry-status', role: 'status' })
  const chartBox = h('div', { class: 'chart', id: 'telemetry-chart' })
  const rows = h('tbody', { id: 'telemetry-rows' })
  const reconnect = h('button', { type: 'button', class: 'secondary small', hidden: true }, 'Reconnect')
  fill(container, h('div', { class: 'row' }, status, reconnect), chartBox,
    h('table', { class: 'grid events', id: 'telemetry-table' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Enqueued'), h('th', {}, 'Properties'), h('th', {}, 'Body'))), rows))
  const chart = new TimeChart(chartBox, { title: 'Numeric fields of JSON bodies', maxPoints: MAX_POINTS })
  let ws
  let stopped = false

  const show = (e) => {
    const text = decodeBody(e.body)
    const t = Date.parse(e.enqueuedTimeUtc)
    const fields = numericFields(text)
    if (Object.keys(fields).length > 0) chart.push((Number.isNaN(t) ? Date.now() : t) / 1000, fields)
    const props = { ...(e.properties ?? {}) }
    for (const k of ['message-id', 'content-type', 'content-encoding']) if (e.systemProperties?.[k] !== undefined) props[`$${k}`] = e.systemProperties[k]
    rows.prepend(h('tr', {},
      h('td', { class: 'time' }, Number.isNaN(t) ? String(e.enqueuedTimeUtc) : new Date(t).toLocaleTimeString()),
      h('td', { class: 'props' }, clip(JSON.stringify(props), 500)),
      h('td', { class: 'body' }, clip(text, MAX_BODY_CHARS))))
    while (rows.children.length > MAX_ROWS) rows.lastElementChild.remove()
  }

  async function open() {
    reconnect.hidden = true
    const token = await streamToken().catch(() => null)
    if (stopped) return
    if (!token) return say(status, 'Live telemetry needs a shared access policy login: the event stream takes no bearer tokens.', 'error')
    say(status, 'Connecting to the event stream…')
    const url = `wss://${location.host}/messages/events/stream?from=latest&authorization=${encodeURIComponent(token)}`
    ws = new WebSocket(url)
    ws.addEventListener('open', () => say(status, `Live: waiting for telemetry from ${deviceId}`, 'ok'))
    ws.addEventListener('message', (m) => {
      let events
      try { events = JSON.parse(m.data) } catch { return }
      if (!Array.isArray(events)) return
      for (const e of events) if (e?.systemProperties?.[DEVICE_ID] === deviceId) show(e)
      if (rows.children.length > 0) say(status, `Live: ${chart.length} points from ${deviceId}`, 'ok')
    })
    ws.addEventListener('close', (e) => {
      if (stopped) return
      say(status, `The event stream closed (${e.code}${e.reason ? ` ${e.reason}` : ''})`, 'error')
      reconnect.hidden = false
    })
  }
  reconnect.addEventListener('click', () => void open())
  void open()
  return () => {
    stopped = true
    ws?.close(1000, 'page left')
    chart.destroy()
  }
}
