// The devices page: a device query (IoT Hub query language, a page of 100 at a time), creating a
// device and deleting one. Ids come from the registry and may hold anything a device id may: they
// are shown as text and put in URLs encoded. A query needs ServiceConnect (twins/read): a login
// without it (registryRead, registryReadWrite, a Registry Contributor role) gets the registry's list
// instead (GET /devices, the first 1000). Rows of `FROM devices.modules` are modules: listed with
// their device (linked) and module id, and no Delete, which would delete the whole device.
import { api, bulkOne, errorText, refusedForRights, segment, unaddressable } from './api.js'
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
  const moduleRows = h('tbody', { id: 'module-rows' })
  const deviceLink = (id) => h('a', { href: `#/device/${encodeURIComponent(id)}`, class: 'device-link' }, id)
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
      const r = unaddressable(id) ? await bulkOne({ id, importMode: 'delete' }) : await api('DELETE', `/devices/${segment(id)}`, { headers: { 'If-Match': '*' } })
      if (gone) return
      if (r.ok) { say(status, `Deleted ${id}`, 'ok'); tr.remove() } else { say(status, `Delete ${id}: ${errorText(r)}`, 'error'); del.disabled = false }
    })
    const tr = h('tr', { 'data-device-id': id },
      h('td', {}, deviceLink(id)),
      h('td', { class: `state ${d.status === 'enabled' ? 'good' : 'bad'}` }, d.status ?? '—'),
      h('td', { class: `state ${d.connectionState === 'Connected' ? 'good' : ''}` }, d.connectionState ?? '—'),
      h('td', {}, d.lastActivityTime === undefined ? '—' : when(d.lastActivityTime)),
      h('td', { class: 'num' }, d.cloudToDeviceMessageCount ?? '—'),
      h('td', {}, del))
    return tr
  }
  const moduleRow = (m) => h('tr', { 'data-module-device-id': String(m.deviceId), 'data-module-id': String(m.moduleId) },
    h('td', {}, deviceLink(String(m.deviceId))),
    h('td', { class: 'device-id' }, String(m.moduleId)),
    h('td', { class: `state ${m.connectionState === 'Connected' ? 'good' : ''}` }, m.connectionState ?? '—'),
    h('td', {}, m.lastActivityTime === undefined ? '—' : when(m.lastActivityTime)))

  const counted = () => {
    const n = (k, one) => `${k} ${one}${k === 1 ? '' : 's'}`
    const parts = [n(rows.children.length, 'device')]
    if (moduleRows.children.length > 0) parts.push(n(moduleRows.children.length, 'module'))
    return rows.children.length === 0 && moduleRows.children.length > 0 ? parts[1] : parts.join(', ')
  }

  const show = (items, next) => {
    if (!next) { rows.replaceChildren(); moduleRows.replaceChildren(); other.hidden = true }
    const isObj = (d) => d !== null && typeof d === 'object'
    // a module's row has its device's id too: it must not be taken for the device
    const modules = items.filter((d) => isObj(d) && typeof d.deviceId === 'string' && typeof d.moduleId === 'string')
    // projections and aggregates have no device ids: shown as they came
    const devices = items.filter((d) => isObj(d) && typeof d.deviceId === 'string' && d.moduleId === undefined)
    rows.append(...devices.map(row))
    moduleRows.append(...modules.map(moduleRow))
    moduleTable.hidden = moduleRows.children.length === 0
    deviceTable.hidden = rows.children.length === 0 && moduleRows.children.length > 0
    const rest = items.filter((d) => !devices.includes(d) && !modules.includes(d))
    if (rest.length > 0) { other.hidden = false; fill(other, pretty(rest)) }
  }

  async function run(next) {
    const text = query.value.trim() || DEFAULT_QUERY
    lastQuery = text
    say(status, 'Querying…')
    const headers = { 'x-ms-max-item-count': PAGE_SIZE, ...(next ? { 'x-ms-continuation': next } : {}) }
    const r = await api('POST', '/devices/query', { body: { query: text }, headers })
    if (gone) return
    if (!r.ok && refusedForRights(r) && !next) return list(r)
    if (!r.ok) return say(status, errorText(r), 'error')
    const items = Array.isArray(r.body) ? r.body : []
    continuation = r.headers.get('x-ms-continuation') ?? undefined
    more.hidden = continuation === undefined
    show(items, next)
    say(status, `${counted()}${continuation ? ' (more on the next page)' : ''}`)
  }

  /** The registry's list, for a login that may not query. */
  async function list(refused) {
    const r = await api('GET', '/devices/?top=1000')
    if (gone) return
    more.hidden = true
    continuation = undefined
    if (!r.ok) return say(status, `The query: ${errorText(refused)}. The registry's list: ${errorText(r)}`, 'error')
    show(Array.isArray(r.body) ? r.body : [])
    say(status, `${counted()} from the registry (GET /devices, at most 1000): the query was refused (${errorText(refused)})`)
  }

  const deviceTable = h('table', { class: 'grid', id: 'device-table' },
    h('thead', {}, h('tr', {}, ['Device id', 'Status', 'Connection', 'Last activity', 'C2D queued', ''].map((c) => h('th', {}, c)))),
    rows)
  const moduleTable = h('table', { class: 'grid', id: 'module-table', hidden: true },
    h('thead', {}, h('tr', {}, ['Device id', 'Module id', 'Connection', 'Last activity'].map((c) => h('th', {}, c)))),
    moduleRows)

  const createForm = h('form', {
    id: 'create-device',
    onsubmit: async (e) => {
      e.preventDefault()
      const id = newId.value.trim()
      if (!id) return say(createStatus, 'a device id is required', 'error')
      const r = unaddressable(id) ? await bulkOne({ id, importMode: 'create' }) : await api('PUT', `/devices/${segment(id)}`, { body: { deviceId: id } })
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
    deviceTable, moduleTable,
    more, other))
  void run()
  return () => { gone = true }
}
