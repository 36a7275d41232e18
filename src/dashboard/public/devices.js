// The devices page: a device query (IoT Hub query language, a page of 100 at a time), creating a
// device and deleting one. Ids come from the registry and may hold anything a device id may: they
// are shown as text and put in URLs encoded.
import { api, errorText } from './api.js'
import { field, fill, h, pretty, say, when } from './dom.js'

const DEFAULT_QUERY = 'SELECT * FROM devices'
const PAGE_SIZE = '100'
let lastQuery = DEFAULT_QUERY

export function render(main) {
  document.title = 'Hyperhub · devices'
  let gone = false
  const status = h('p', { class: 'status', id: 'devices-status', role: 'status' })
  const query = h('input', { id: 'device-query', type: 'text', value: lastQuery, spellcheck: 'false', autocomplete: 'off' })
  const rows = h('tbody', { id: 'device-rows' })
  const other = h('pre', { id: 'query-other', class: 'json', hidden: true })
  const more = h('button', { type: 'button', id: 'device-more', class: 'secondary', hidden: true }, 'Next page')
  const newId = h('input', { id: 'new-device-id', type: 'text', placeholder: 'thermostat-1', autocomplete: 'off', spellcheck: 'false', maxlength: 128 })
  const createStatus = h('p', { class: 'status', id: 'create-status', role: 'status' })
  let continuation

  const row = (d) => {
    const id = String(d.deviceId)
    const del = h('button', { type: 'button', class: 'danger small', 'data-action': 'delete' }, 'Delete')
    del.addEventListener('click', async () => {
      // a second click confirms: no modal dialog, which would block the page
      if (del.dataset.armed !== 'yes') { del.dataset.armed = 'yes'; del.textContent = 'Confirm delete'; return }
      del.disabled = true
      const r = await api('DELETE', `/devices/${encodeURIComponent(id)}`, { headers: { 'If-Match': '*' } })
      if (gone) return
      if (r.ok) { say(status, `Deleted ${id}`, 'ok'); tr.remove() } else { say(status, `Delete ${id}: ${errorText(r)}`, 'error'); del.disabled = false }
    })
    const tr = h('tr', { 'data-device-id': id },
      h('td', {}, h('a', { href: `#/device/${encodeURIComponent(id)}`, class: 'device-link' }, id)),
      h('td', { class: `state ${d.status === 'enabled' ? 'good' : 'bad'}` }, d.status ?? '—'),
      h('td', { class: `state ${d.connectionState === 'Connected' ? 'good' : ''}` }, d.connectionState ?? '—'),
      h('td', {}, d.lastActivityTime === undefined ? '—' : when(d.lastActivityTime)),
      h('td', { class: 'num' }, d.cloudToDeviceMessageCount ?? '—'),
      h('td', {}, del))
    return tr
  }

  async function run(next) {
    const text = query.value.trim() || DEFAULT_QUERY
    lastQuery = text
    say(status, 'Querying…')
    const headers = { 'x-ms-max-item-count': PAGE_SIZE, ...(next ? { 'x-ms-continuation': next } : {}) }
    const r = await api('POST', '/devices/query', { body: { query: text }, headers })
    if (gone) return
    if (!r.ok) return say(status, errorText(r), 'error')
    const items = Array.isArray(r.body) ? r.body : []
    continuation = r.headers.get('x-ms-continuation') ?? undefined
    more.hidden = continuation === undefined
    if (!next) { rows.replaceChildren(); other.hidden = true }
    // projections and aggregates have no device ids: shown as they came
    const withIds = items.filter((d) => d !== null && typeof d === 'object' && typeof d.deviceId === 'string')
    rows.append(...withIds.map(row))
    if (withIds.length < items.length) { other.hidden = false; fill(other, pretty(items.filter((d) => !withIds.includes(d)))) }
    say(status, `${rows.children.length} device${rows.children.length === 1 ? '' : 's'}${continuation ? ' (more on the next page)' : ''}`)
  }

  const createForm = h('form', {
    id: 'create-device',
    onsubmit: async (e) => {
      e.preventDefault()
      const id = newId.value.trim()
      if (!id) return say(createStatus, 'a device id is required', 'error')
      const r = await api('PUT', `/devices/${encodeURIComponent(id)}`, { body: { deviceId: id } })
      if (gone) return
      if (!r.ok) return say(createStatus, errorText(r), 'error')
      newId.value = ''
      say(createStatus, `Created ${id}`, 'ok')
      await run()
    },
  }, field('Device id', newId), h('button', { type: 'submit', id: 'create-device-submit' }, 'Create device'), createStatus)

  const queryForm = h('form', { id: 'query-form', onsubmit: (e) => { e.preventDefault(); void run() } },
    field('Query', query), h('button', { type: 'submit', id: 'device-query-run' }, 'Run'))
  more.addEventListener('click', () => { if (continuation) void run(continuation) })

  main.append(h('section', {},
    h('h1', {}, 'Devices'),
    h('div', { class: 'cards' },
      h('div', { class: 'card wide' }, queryForm, h('p', { class: 'hint' }, 'The IoT Hub query language, e.g. ', h('code', {}, "SELECT * FROM devices WHERE connectionState = 'Connected'"))),
      h('div', { class: 'card' }, createForm)),
    status,
    h('table', { class: 'grid', id: 'device-table' },
      h('thead', {}, h('tr', {}, ['Device id', 'Status', 'Connection', 'Last activity', 'C2D queued', ''].map((c) => h('th', {}, c)))),
      rows),
    more, other))
  void run()
  return () => { gone = true }
}
