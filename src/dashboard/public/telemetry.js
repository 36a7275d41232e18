// Live telemetry of one device from the event stream (wss://host/messages/events/stream with
// devicePartition=<id>: only the partition the device's events land on). The numeric top-level
// fields of JSON bodies are plotted and the last events listed with their properties; other devices'
// events on that partition are dropped here. What the page keeps is bounded (points, rows, series,
// body text), and it draws once an animation frame whatever the rate. Each connection has a token of
// its own, renewed before it expires: the page reconnects from the next sequence number of the
// partition (after a 1008 "SAS token expired" close too), so no event is lost or shown twice. The
// socket closes when the page is left.
import { api, errorText, streamToken } from './api.js'
import { TimeChart } from './charts.js'
import { fill, h, say } from './dom.js'

const MAX_POINTS = 300
const MAX_ROWS = 20
const MAX_BODY_CHARS = 2000
const DEVICE_ID = 'iothub-connection-device-id'
/** The hub's limit on stream readers at once (src/events/event-stream.ts). */
const MAX_READERS = 64
/** Renew this long before the token expires (a quarter of its life when that is shorter)… */
const RENEW_BEFORE_MS = 60_000
/** …but no sooner than this after opening, whatever the clocks say. */
const MIN_RENEW_MS = 3000
/** Draws at least this often when animation frames do not come (a hidden tab). */
const FLUSH_MS = 250

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
  const reconnect = h('button', { type: 'button', class: 'secondary small', id: 'telemetry-reconnect', hidden: true }, 'Reconnect')
  fill(container, h('div', { class: 'row' }, status, reconnect), chartBox,
    h('table', { class: 'grid events', id: 'telemetry-table' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Enqueued'), h('th', {}, 'Properties'), h('th', {}, 'Body'))), rows))
  const chart = new TimeChart(chartBox, { title: 'Numeric fields of JSON bodies', maxPoints: MAX_POINTS })
  let ws
  let stopped = false
  let renewTimer
  let reconnectTimer
  let quickExpiries = 0
  let lastExpiry = 0
  /** the next sequence number of the device's partition, once an event of it was seen */
  let next
  /** the hub's time (its Date header) before the first stream opened, and whether one did */
  let since
  let wasLive = false

  // --- drawing: events wait here (bounded) for the next frame ---
  let points = []
  let fresh = []
  let frame
  let flushTimer
  const live = () => say(status, rows.children.length > 0 ? `Live: ${chart.length} points from ${deviceId}` : `Live: waiting for telemetry from ${deviceId}`, 'ok')
  const flush = () => {
    cancelAnimationFrame(frame)
    clearTimeout(flushTimer)
    frame = flushTimer = undefined
    if (stopped) return
    chart.pushMany(points)
    const made = fresh.map((e) => {
      const text = decodeBody(e.body)
      const t = Date.parse(e.enqueuedTimeUtc)
      const props = { ...(e.properties ?? {}) }
      for (const k of ['message-id', 'content-type', 'content-encoding']) if (e.systemProperties?.[k] !== undefined) props[`$${k}`] = e.systemProperties[k]
      return h('tr', {},
        h('td', { class: 'time' }, Number.isNaN(t) ? String(e.enqueuedTimeUtc) : new Date(t).toLocaleTimeString()),
        h('td', { class: 'props' }, clip(JSON.stringify(props), 500)),
        h('td', { class: 'body' }, clip(text, MAX_BODY_CHARS)))
    })
    points = []
    fresh = []
    rows.prepend(...made.reverse())
    while (rows.children.length > MAX_ROWS) rows.lastElementChild.remove()
    if (ws?.readyState === WebSocket.OPEN) live()
  }
  const take = (e) => {
    const text = decodeBody(e.body)
    const fields = numericFields(text)
    if (Object.keys(fields).length > 0) {
      const t = Date.parse(e.enqueuedTimeUtc)
      points.push([(Number.isNaN(t) ? Date.now() : t) / 1000, fields])
      if (points.length > MAX_POINTS) points.shift()
    }
    fresh.push(e)
    if (fresh.length > MAX_ROWS) fresh.shift()
    if (frame === undefined) {
      frame = requestAnimationFrame(flush)
      flushTimer = setTimeout(flush, FLUSH_MS)
    }
  }

  const refused = (text) => {
    say(status, text, 'error')
    reconnect.hidden = false
  }

  async function open() {
    clearTimeout(renewTimer)
    reconnect.hidden = true
    const signed = await streamToken().catch(() => null)
    if (stopped) return
    if (!signed) return say(status, 'Live telemetry needs a shared access policy login: the event stream takes no bearer tokens.', 'error')
    if (since === undefined) {
      // whether this login may read the stream (a refused upgrade tells a browser nothing), and the hub's clock
      const r = await api('GET', '/messages/events/partitions')
      if (stopped) return
      if (!r.ok) return refused(`Live telemetry: ${errorText(r)}`)
      since = Date.parse(r.headers.get('date') ?? '')
    }
    // from the next event of the partition not yet taken; before any, from when the first stream opened
    const position = next !== undefined ? `fromSequenceNumber=${next}`
      : wasLive && Number.isFinite(since) ? `fromEnqueuedTime=${encodeURIComponent(new Date(since).toISOString())}` : 'from=latest'
    say(status, 'Connecting to the event stream…')
    const socket = new WebSocket(`wss://${location.host}/messages/events/stream?devicePartition=${encodeURIComponent(deviceId)}&${position}&authorization=${encodeURIComponent(signed.token)}`)
    ws = socket
    let opened = false
    socket.addEventListener('open', () => {
      if (socket !== ws) return
      opened = wasLive = true
      live()
      const ttl = signed.expiresAt - Date.now()
      renewTimer = setTimeout(renew, Math.max(MIN_RENEW_MS, ttl - Math.min(RENEW_BEFORE_MS, ttl / 4)))
    })
    socket.addEventListener('message', (m) => {
      if (socket !== ws) return
      let events
      try { events = JSON.parse(m.data) } catch { return }
      if (!Array.isArray(events)) return
      for (const e of events) {
        if (Number.isSafeInteger(e?.sequenceNumber)) next = e.sequenceNumber + 1
        if (e?.systemProperties?.[DEVICE_ID] === deviceId) take(e)
      }
    })
    socket.addEventListener('close', (e) => {
      if (stopped || socket !== ws) return
      ws = undefined
      clearTimeout(renewTimer)
      status.dataset.lastClose = `${e.code}${e.reason ? ` ${e.reason}` : ''}`
      if (e.code === 1008 && /expired/i.test(e.reason)) {
        // a clock far behind the hub's makes every new token expire at once: reconnect, but not in a loop
        const now = Date.now()
        quickExpiries = now - lastExpiry < 30_000 ? quickExpiries + 1 : 1
        lastExpiry = now
        if (quickExpiries > 3) return refused('The stream\'s tokens keep expiring at once: is this computer\'s clock behind the hub\'s?')
        say(status, 'The stream\'s token expired: reconnecting…')
        reconnectTimer = setTimeout(() => void open(), quickExpiries === 1 ? 0 : 2000 * quickExpiries)
        return
      }
      if (!opened) return refused(`The hub refused the stream (it allows ${MAX_READERS} readers at once, or the token lacks ServiceConnect)`)
      refused(`The event stream closed (${e.code}${e.reason ? ` ${e.reason}` : ''})`)
    })
  }

  /** A new connection with a new token before this one's expires; messages after close() are not taken. */
  function renew() {
    const old = ws
    ws = undefined
    old?.close(1000, 'renewing the token')
    void open()
  }

  reconnect.addEventListener('click', () => void open())
  void open()
  return () => {
    stopped = true
    clearTimeout(renewTimer)
    clearTimeout(reconnectTimer)
    cancelAnimationFrame(frame)
    clearTimeout(flushTimer)
    ws?.close(1000, 'page left')
    chart.destroy()
  }
}
