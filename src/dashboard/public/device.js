// One device: its twin (tags and desired properties edited as JSON, saved as a merge patch with the
// etag it was read with, so someone else's change in between is a 412, not lost), a direct method,
// a cloud-to-device message, and its live telemetry. Everything the device wrote is shown as text.
// A device named `.` or `..` cannot be in a URL path (api.js unaddressable): its twin is read with
// the query and saved with a bulk registry operation (etag and all); methods and messages, which
// only take the id in the path, are not offered for it.
import { api, bulkOne, errorText, segment, unaddressable } from './api.js'
import { field, fill, h, pretty, say, when } from './dom.js'
import { followTelemetry } from './telemetry.js'

const own = (o, k) => Object.prototype.hasOwnProperty.call(o, k)
const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v)

/**
 * Sets an own property: `out[k] = v` would call a setter for `__proto__` (and set the prototype)
 * instead. Twin keys may be any name: `toString`, `constructor`, `hasOwnProperty`, `__proto__`.
 */
function put(out, k, v) {
  Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true })
}

/** The merge patch that turns `from` into `to` (a key left out is removed: null). Own keys only: `k in to` would find `toString`. */
function mergePatch(from, to) {
  const out = {}
  for (const k of Object.keys(to)) {
    const had = own(from, k)
    if (had && isObject(from[k]) && isObject(to[k])) {
      const inner = mergePatch(from[k], to[k])
      if (Object.keys(inner).length > 0) put(out, k, inner)
    } else if (!had || JSON.stringify(from[k]) !== JSON.stringify(to[k])) put(out, k, to[k])
  }
  for (const k of Object.keys(from)) if (!own(to, k)) put(out, k, null)
  return out
}

/** Desired properties without the twin's own bookkeeping ($metadata, $version). */
function editable(props) {
  const out = {}
  for (const [k, v] of Object.entries(props ?? {})) if (!k.startsWith('$')) put(out, k, v)
  return out
}

function parseJson(text, what) {
  try { return { value: JSON.parse(text) } } catch (e) { return { error: `${what} is not valid JSON: ${e.message}` } }
}

export function render(main, deviceId) {
  document.title = `Hyperhub · ${deviceId}`
  let gone = false
  const dotted = unaddressable(deviceId)
  const path = dotted ? null : `/twins/${segment(deviceId)}`
  const noPath = `A browser cannot put the device id ${JSON.stringify(deviceId)} in a URL path (it drops "." and ".." segments): use an SDK or curl for this.`
  const summary = h('p', { class: 'summary', id: 'device-summary' })

  // --- twin ---
  const twinText = h('textarea', { id: 'twin-editor', rows: 12, spellcheck: 'false' })
  const reported = h('pre', { class: 'json', id: 'twin-reported' })
  const twinStatus = h('p', { class: 'status', id: 'twin-status', role: 'status' })
  let original = { tags: {}, desired: {} }
  let etag = null
  const showTwin = (twin) => {
    original = { tags: twin.tags ?? {}, desired: editable(twin.properties?.desired) }
    etag = twin.etag
    twinText.value = pretty({ tags: original.tags, properties: { desired: original.desired } })
    fill(reported, pretty(editable(twin.properties?.reported)))
    fill(summary, h('span', {}, 'Status '), h('b', {}, twin.status ?? '—'), ' · ', h('b', { id: 'device-connection' }, twin.connectionState ?? '—'),
      ` · last activity ${when(twin.lastActivityTime)} · twin version ${twin.version ?? '—'}`)
  }
  /** GET /twins/{id}, or for an id no path holds, the device query for it. */
  async function readTwin() {
    if (!dotted) return api('GET', path)
    const r = await api('POST', '/devices/query', { body: { query: `SELECT * FROM devices WHERE deviceId = '${deviceId}'` } })
    if (!r.ok) return r
    const twin = Array.isArray(r.body) ? r.body[0] : undefined
    return twin ? { ...r, body: twin } : { ok: false, status: 404, headers: r.headers, body: { Message: `ErrorCode:DeviceNotFound;Device ${deviceId} not registered` } }
  }
  /** PATCH /twins/{id} with If-Match, or the same as a bulk updateTwinIfMatchETag; answers the twin. */
  async function patchTwin(patch) {
    if (!dotted) return api('PATCH', path, { body: patch, headers: { 'If-Match': `"${etag}"` } })
    const r = await bulkOne({ id: deviceId, importMode: 'updateTwinIfMatchETag', twinETag: etag, ...patch })
    return r.ok ? readTwin() : r
  }
  async function loadTwin() {
    const r = await readTwin()
    if (gone) return
    if (!r.ok) return say(twinStatus, errorText(r), 'error')
    showTwin(r.body)
    say(twinStatus, `Read version ${r.body.version} (etag ${etag})`)
  }
  async function saveTwin() {
    const parsed = parseJson(twinText.value, 'The twin')
    if (parsed.error) return say(twinStatus, parsed.error, 'error')
    const v = parsed.value
    if (!isObject(v) || (v.tags !== undefined && !isObject(v.tags)) || (v.properties !== undefined && !isObject(v.properties))) {
      return say(twinStatus, 'The twin must look like {"tags": {…}, "properties": {"desired": {…}}}', 'error')
    }
    const tags = mergePatch(original.tags, v.tags ?? {})
    const desired = mergePatch(original.desired, editable(v.properties?.desired))
    const patch = {
      ...(Object.keys(tags).length ? { tags } : {}),
      ...(Object.keys(desired).length ? { properties: { desired } } : {}),
    }
    if (Object.keys(patch).length === 0) return say(twinStatus, 'Nothing changed')
    say(twinStatus, 'Saving…')
    const r = await patchTwin(patch)
    if (gone) return
    if (!r.ok) {
      const hint = r.status === 412 ? ' The twin changed since it was read: reload it and edit again.' : ''
      return say(twinStatus, `${errorText(r)}${hint}`, 'error')
    }
    showTwin(r.body)
    say(twinStatus, `Saved: version ${r.body.version}`, 'ok')
  }
  const twinCard = h('div', { class: 'card' },
    h('h2', {}, 'Twin'),
    h('form', { id: 'twin-form', onsubmit: (e) => { e.preventDefault(); void saveTwin() } },
      field('Tags and desired properties (a key removed is deleted)', twinText),
      h('div', { class: 'row' }, h('button', { type: 'submit', id: 'twin-save' }, 'Save'),
        h('button', { type: 'button', class: 'secondary', id: 'twin-reload', onclick: () => void loadTwin() }, 'Reload'))),
    twinStatus,
    h('h3', {}, 'Reported properties'), reported)

  // --- direct method ---
  const methodName = h('input', { id: 'method-name', type: 'text', value: 'reboot', spellcheck: 'false', maxlength: 128 })
  const methodPayload = h('textarea', { id: 'method-payload', rows: 4, spellcheck: 'false' })
  methodPayload.value = '{}'
  const methodTimeout = h('input', { id: 'method-timeout', type: 'number', min: 5, max: 300, value: 30 })
  const methodStatus = h('p', { class: 'status', id: 'method-status', role: 'status' })
  const methodResult = h('pre', { class: 'json', id: 'method-result' })
  async function invoke() {
    fill(methodResult)
    if (dotted) return say(methodStatus, noPath, 'error')
    const parsed = methodPayload.value.trim() === '' ? { value: null } : parseJson(methodPayload.value, 'The payload')
    if (parsed.error) return say(methodStatus, parsed.error, 'error')
    say(methodStatus, 'Waiting for the device…')
    const r = await api('POST', `${path}/methods`, {
      body: { methodName: methodName.value.trim(), payload: parsed.value, responseTimeoutInSeconds: Number(methodTimeout.value) || 30, connectTimeoutInSeconds: 0 },
    })
    if (gone) return
    if (!r.ok) return say(methodStatus, errorText(r), 'error')
    say(methodStatus, `The device answered status ${r.body.status}`, r.body.status >= 200 && r.body.status < 300 ? 'ok' : 'error')
    fill(methodResult, pretty(r.body.payload))
  }
  const methodCard = h('div', { class: 'card' },
    h('h2', {}, 'Direct method'),
    h('form', { id: 'method-form', onsubmit: (e) => { e.preventDefault(); void invoke() } },
      field('Method name', methodName), field('Payload (JSON)', methodPayload), field('Response timeout (s)', methodTimeout),
      h('button', { type: 'submit', id: 'method-invoke' }, 'Invoke')),
    methodStatus, methodResult)

  // --- cloud-to-device ---
  const c2dBody = h('textarea', { id: 'c2d-body', rows: 3, spellcheck: 'false' })
  const c2dProps = h('textarea', { id: 'c2d-properties', rows: 2, spellcheck: 'false', placeholder: '{"priority": "high"}' })
  const c2dStatus = h('p', { class: 'status', id: 'c2d-status', role: 'status' })
  async function send() {
    if (dotted) return say(c2dStatus, noPath, 'error')
    const parsed = c2dProps.value.trim() === '' ? { value: {} } : parseJson(c2dProps.value, 'The properties')
    if (parsed.error) return say(c2dStatus, parsed.error, 'error')
    if (!isObject(parsed.value)) return say(c2dStatus, 'The properties must be a JSON object of strings', 'error')
    const headers = {}
    for (const [k, v] of Object.entries(parsed.value)) {
      // properties travel as iothub-app-* headers: names are HTTP tokens, values Latin-1 text
      if (!/^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/.test(k)) return say(c2dStatus, `Property name ${JSON.stringify(k)} is not an HTTP token`, 'error')
      if (typeof v !== 'string' || !/^[\t\x20-\x7e\xa0-\xff]*$/.test(v)) return say(c2dStatus, `Property ${k} must be a string of Latin-1 text`, 'error')
      headers[`iothub-app-${k}`] = v
    }
    const r = await api('POST', `/devices/${segment(deviceId)}/messages/devicebound`, { raw: c2dBody.value, headers })
    if (gone) return
    if (!r.ok) return say(c2dStatus, errorText(r), 'error')
    say(c2dStatus, 'Queued for the device', 'ok')
  }
  const c2dCard = h('div', { class: 'card' },
    h('h2', {}, 'Cloud-to-device message'),
    h('form', { id: 'c2d-form', onsubmit: (e) => { e.preventDefault(); void send() } },
      field('Body', c2dBody), field('Application properties (JSON)', c2dProps),
      h('button', { type: 'submit', id: 'c2d-send' }, 'Send')),
    c2dStatus)

  const telemetry = h('div', { id: 'telemetry' })
  main.append(h('section', {},
    h('p', {}, h('a', { href: '#/devices' }, '← Devices')),
    h('h1', {}, 'Device ', h('span', { class: 'device-id', id: 'device-title' }, deviceId)),
    summary,
    h('div', { class: 'cards' }, twinCard, h('div', { class: 'card wide' }, h('h2', {}, 'Live telemetry'), telemetry)),
    h('div', { class: 'cards' }, methodCard, c2dCard)))
  if (dotted) {
    for (const [button, line] of [['#method-invoke', methodStatus], ['#c2d-send', c2dStatus]]) {
      main.querySelector(button).disabled = true
      say(line, noPath)
    }
  }
  const stop = followTelemetry(telemetry, deviceId)
  void loadTwin()
  return () => { gone = true; stop() }
}
