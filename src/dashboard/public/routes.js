// The routes page: the routing configuration from GET /routing (routes, fallback, endpoints,
// enrichments) and a tester that runs a condition, or every route, against a sample message and
// twin through ARM's test APIs ($testnew, $testall). Nothing is routed by a test.
import { api, errorText } from './api.js'
import { field, fill, h, say } from './dom.js'

const SOURCES = ['DeviceMessages', 'TwinChangeEvents', 'DeviceLifecycleEvents', 'DeviceConnectionStateEvents']

function grid(headings, rows, id) {
  return h('table', { class: 'grid', id }, h('thead', {}, h('tr', {}, headings.map((c) => h('th', {}, c)))),
    h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: headings.length, class: 'empty' }, 'none'))))
}

function parseObject(text, what) {
  if (text.trim() === '') return { value: {} }
  try {
    const v = JSON.parse(text)
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return { error: `${what} must be a JSON object` }
    return { value: v }
  } catch (e) {
    return { error: `${what} is not valid JSON: ${e.message}` }
  }
}

export function render(main) {
  document.title = 'Hyperhub · routes'
  let gone = false
  const status = h('p', { class: 'status', id: 'routes-status', role: 'status' })
  const config = h('div', { id: 'routing-config' })

  // --- tester ---
  const condition = h('textarea', { id: 'test-condition', rows: 3, spellcheck: 'false' })
  condition.value = "$body.temperature > 30 AND level = 'critical'"
  const source = h('select', { id: 'test-source' }, SOURCES.map((s) => h('option', { value: s }, s)))
  const body = h('textarea', { id: 'test-body', rows: 3, spellcheck: 'false' })
  body.value = '{"temperature": 35}'
  const appProps = h('textarea', { id: 'test-app-properties', rows: 2, spellcheck: 'false' })
  appProps.value = '{"level": "critical"}'
  const sysProps = h('textarea', { id: 'test-system-properties', rows: 2, spellcheck: 'false' })
  sysProps.value = '{"contentType": "application/json", "contentEncoding": "utf-8"}'
  const twin = h('textarea', { id: 'test-twin', rows: 3, spellcheck: 'false' })
  twin.value = '{"tags": {}, "properties": {"desired": {}, "reported": {}}}'
  const testStatus = h('p', { class: 'status', id: 'test-status', role: 'status' })
  const testDetails = h('div', { id: 'test-details' })

  function sample() {
    const parts = { appProperties: parseObject(appProps.value, 'Application properties'), systemProperties: parseObject(sysProps.value, 'System properties'), twin: parseObject(twin.value, 'The twin') }
    const bad = Object.values(parts).find((p) => p.error)
    if (bad) return { error: bad.error }
    return { message: { body: body.value, appProperties: parts.appProperties.value, systemProperties: parts.systemProperties.value }, twin: parts.twin.value }
  }

  async function testOne() {
    const s = sample()
    fill(testDetails)
    if (s.error) return say(testStatus, s.error, 'error')
    const route = { name: 'dashboard-test', source: source.value, condition: condition.value, endpointNames: ['events'], isEnabled: true }
    const r = await api('POST', '/routing/routes/$testnew', { body: { ...s, route } })
    if (gone) return
    if (!r.ok) return say(testStatus, errorText(r), 'error')
    const errors = r.body.details?.compilationErrors ?? []
    say(testStatus, `Result: ${r.body.result}`, errors.length ? 'error' : r.body.result === 'true' ? 'ok' : '')
    if (errors.length) {
      fill(testDetails, h('ul', { class: 'errors', id: 'test-errors' }, errors.map((e) => h('li', {}, `${e.severity}: ${e.message}`))))
    }
  }

  async function testAll() {
    const s = sample()
    fill(testDetails)
    if (s.error) return say(testStatus, s.error, 'error')
    const r = await api('POST', '/routing/routes/$testall', { body: { ...s, routingSource: source.value } })
    if (gone) return
    if (!r.ok) return say(testStatus, errorText(r), 'error')
    const names = (r.body.routes ?? []).map((m) => m.properties?.name)
    say(testStatus, names.length ? `Matching routes: ${names.join(', ')}` : `No enabled ${source.value} route matches`, names.length ? 'ok' : '')
  }

  const tester = h('div', { class: 'card wide', id: 'route-tester' },
    h('h2', {}, 'Route tester'),
    h('p', { class: 'hint' }, 'Runs on the hub\'s own route evaluator; nothing is routed. $body is read only when the system properties say the body is JSON.'),
    h('div', { class: 'cards' },
      h('div', {}, field('Condition', condition), field('Source', source), field('Message body', body)),
      h('div', {}, field('Application properties', appProps), field('System properties', sysProps), field('Twin', twin))),
    h('div', { class: 'row' },
      h('button', { type: 'button', id: 'test-one', onclick: () => void testOne() }, 'Test this condition'),
      h('button', { type: 'button', id: 'test-all', class: 'secondary', onclick: () => void testAll() }, 'Test all routes')),
    testStatus, testDetails)

  async function load() {
    const r = await api('GET', '/routing')
    if (gone) return
    if (!r.ok) return say(status, `${errorText(r)} (routing is the owner's to read)`, 'error')
    const c = r.body
    const use = (route) => h('button', {
      type: 'button', class: 'secondary small',
      onclick: () => { condition.value = route.condition; source.value = route.source; condition.focus() },
    }, 'Try')
    const endpoints = Object.entries(c.endpoints ?? {}).flatMap(([type, list]) => (list ?? []).map((e) => {
      const { name, ...rest } = e
      return h('tr', {}, h('td', {}, name), h('td', {}, type), h('td', { class: 'mono' }, JSON.stringify(rest)))
    }))
    fill(config,
      h('h2', {}, 'Routes'),
      grid(['Name', 'Source', 'Condition', 'Endpoints', 'Enabled', ''], (c.routes ?? []).map((rt) => h('tr', {},
        h('td', {}, rt.name), h('td', {}, rt.source), h('td', { class: 'mono' }, rt.condition), h('td', {}, (rt.endpointNames ?? []).join(', ')),
        h('td', {}, rt.isEnabled ? 'yes' : 'no'), h('td', {}, use(rt)))), 'routes-table'),
      h('p', { id: 'fallback-route' }, 'Fallback route: ', h('b', {}, c.fallbackRoute?.isEnabled ? 'enabled' : 'disabled'),
        ` → ${(c.fallbackRoute?.endpointNames ?? []).join(', ')} (device messages no route matched)`),
      h('h2', {}, 'Endpoints'),
      grid(['Name', 'Type', 'Settings'], [h('tr', {}, h('td', {}, 'events'), h('td', {}, 'built-in'), h('td', {}, '')), ...endpoints], 'endpoints-table'),
      h('h2', {}, 'Enrichments'),
      grid(['Key', 'Value', 'Endpoints'], (c.enrichments ?? []).map((e) => h('tr', {}, h('td', {}, e.key), h('td', { class: 'mono' }, e.value), h('td', {}, (e.endpointNames ?? []).join(', ')))), 'enrichments-table'))
    say(status, `${(c.routes ?? []).length} routes, ${endpoints.length} custom endpoints, ${(c.enrichments ?? []).length} enrichments`)
  }

  main.append(h('section', {}, h('h1', {}, 'Routes'), status, tester, h('div', { class: 'card wide' }, config)))
  void load()
  return () => { gone = true }
}
