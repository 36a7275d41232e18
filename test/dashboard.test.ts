// The dashboard (issue 19) in a real browser: Debian's chromium driven by playwright-core against a
// real hub. Logs in with the owner's connection string (tokens signed in the page with WebCrypto),
// creates a device, edits its twin (the patch reaches the device over MQTT; a stale etag is a 412),
// invokes a method the device answers, watches its telemetry, shows hostile device data as text,
// reports an offline device and a wrong key as the hub words them, charts /metrics, lists routing
// and tests route conditions. Also: module rows, twin keys named like Object.prototype's members,
// the stream's own token and its reconnects (renewal, a 1008 close, 64 readers), logins lacking
// ServiceConnect, an expiring bearer token, and the device "..". Screenshots go to a temp dir, or to
// docs/ with HYPERHUB_SCREENSHOTS=docs.
import { existsSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type mqttPacket from 'mqtt-packet'
import { chromium, type Browser, type Page, type WebSocket } from 'playwright-core'
import NodeWebSocket from 'ws'
import { startTestHub, tempDir, type TestHub } from './helpers/test-hub.js'
import { connectDevice, nextPublish, until } from './helpers/device-mqtt.js'
import type { MqttTestClient } from './helpers/mqtt-test-client.js'
import { ensureLocalIssuerKey, signRoleToken } from '../src/auth/local-issuer.js'

// what the functions run in the page see (the project's types hold no DOM)
declare const document: { querySelector(s: string): any; querySelectorAll(s: string): any[]; cookie: string }
declare const window: Record<string, unknown>
declare const sessionStorage: { getItem(k: string): string | null; setItem(k: string, v: string): void; removeItem(k: string): void }
declare const localStorage: { length: number }
declare const isSecureContext: boolean

const CHROMIUM = '/usr/bin/chromium'
const SCREENSHOTS = process.env.HYPERHUB_SCREENSHOTS === 'docs' ? join(process.cwd(), 'docs') : tempDir('hyperhub-dashboard-')
const DEVICE = 'dash-dev'

let t: TestHub
let browser: Browser
let page: Page
let device: MqttTestClient | undefined
let base = ''
/** console errors other than failed requests (those are the 401/404/412 the tests cause), and uncaught errors */
const pageErrors: string[] = []
/** the hub page's polls: those under way, and those made after the routes page's first request (it left the hub page) */
const POLLED = new Set(['/metrics', '/hyperhub/metering'])
const pollsUnderWay = new Set<unknown>()
let leavingHub: 'no' | 'leaving' | 'left' = 'no'
let pollsAfterLeaving = 0
/** the event stream WebSockets the page opened */
const streams: WebSocket[] = []

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`chromium is missing at ${CHROMIUM}: install Debian's chromium package (apt-get install -y chromium; .ci/run does)`)
  mkdirSync(SCREENSHOTS, { recursive: true })
  t = await startTestHub()
  base = `https://localhost:${t.hub.ports.https}`
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } })
  page = await context.newPage()
  page.on('console', (m) => { if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) pageErrors.push(m.text()) })
  page.on('pageerror', (e) => pageErrors.push(e.message))
  page.on('websocket', (ws) => { if (new URL(ws.url()).pathname === '/messages/events/stream') streams.push(ws) })
  page.on('request', (r) => {
    const path = new URL(r.url()).pathname
    if (POLLED.has(path)) pollsUnderWay.add(r)
    // the routes page's first request is made as the page is rendered, after the hub page's leave()
    if (leavingHub === 'leaving' && path === '/routing') leavingHub = 'left'
    else if (leavingHub === 'left' && POLLED.has(path)) pollsAfterLeaving++
  })
  page.on('requestfinished', (r) => pollsUnderWay.delete(r))
  page.on('requestfailed', (r) => pollsUnderWay.delete(r))
}, 60_000)

afterAll(async () => {
  await browser?.close()
  device?.destroy()
  await t?.stop()
})

const shot = async (name: string) => {
  await page.evaluate('window.scrollTo(0, 0)')
  await page.screenshot({ path: join(SCREENSHOTS, `dashboard-${name}.png`) })
}
const text = (selector: string) => page.locator(selector).innerText()
/** Waits until the element's text matches. */
const waitText = (selector: string, pattern: RegExp, timeout = 15_000) =>
  page.waitForFunction(([s, p, f]) => new RegExp(p, f).test(document.querySelector(s)?.textContent ?? ''), [selector, pattern.source, pattern.flags] as const, { timeout })
const ownerConnectionString = (key = t.policyKey('iothubowner')) => `HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=${key}`

const policyConnectionString = (policy: string) => `HostName=localhost;SharedAccessKeyName=${policy};SharedAccessKey=${t.policyKey(policy)}`
/** Logs out (when logged in), then in with a connection string or a bearer token. */
async function logInWith(kind: 'sas' | 'bearer', credential: string): Promise<void> {
  if (await page.locator('#logout').count()) await page.click('#logout')
  await page.waitForSelector('#connection-string')
  await page.fill(kind === 'sas' ? '#connection-string' : '#bearer-token', credential)
  await page.click(kind === 'sas' ? '#login-sas-submit' : '#login-bearer-submit')
  await page.waitForSelector('#logout')
}

/** Leaves the device page and opens it again (its telemetry starts afresh); resolves with the stream it opened. */
async function openDevicePage(): Promise<WebSocket> {
  await page.click('#nav-devices')
  const opened = page.waitForEvent('websocket', (ws) => new URL(ws.url()).pathname === '/messages/events/stream')
  await page.click(`tr[data-device-id="${DEVICE}"] a.device-link`)
  await waitText('#telemetry-status', /^Live: waiting for telemetry/)
  return opened
}

/** Sends telemetry `{"n": i}` (property seq=i) every 50 ms until `done()`, then `after` more; resolves with how many. */
async function sendUntil(done: () => boolean, after: number): Promise<number> {
  let i = 0
  const deadline = Date.now() + 15_000
  while (!done() && Date.now() < deadline) {
    await device!.publish(`devices/${DEVICE}/messages/events/seq=${i}`, JSON.stringify({ n: i }))
    i++
    await new Promise((r) => setTimeout(r, 50))
  }
  expect(done()).toBe(true)
  for (let k = 0; k < after; k++, i++) await device!.publish(`devices/${DEVICE}/messages/events/seq=${i}`, JSON.stringify({ n: i }))
  return i
}

/** The page shows events 0..sent-1 once each: as many points, and the last rows in order. */
async function expectShown(sent: number): Promise<void> {
  await waitText('#telemetry-status', new RegExp(`^Live: ${sent} points from ${DEVICE}$`))
  const seqs = (await page.locator('#telemetry-rows tr').allInnerTexts()).map((r) => Number(/"seq":"(\d+)"/.exec(r)?.[1]))
  expect(seqs).toEqual(Array.from({ length: Math.min(20, sent) }, (_, k) => sent - 1 - k))
}

/** The value a chart's legend shows for a series. */
const legendValue = (chart: string, label: string) => page.evaluate(([c, l]) => {
  for (const row of document.querySelectorAll(`${c} .u-legend .u-series`)) {
    if (row.querySelector('.u-label')?.textContent === l) return row.querySelector('.u-value')?.textContent ?? null
  }
  return null
}, [chart, label] as const)

/** Answers the device's next direct method with `status` and the payload `answer` makes of the request's. */
function answerNextMethod(c: MqttTestClient, status: number, answer: (request: unknown) => unknown): Promise<mqttPacket.IPublishPacket> {
  return nextPublish(c, '$iothub/methods/POST/').then((p) => {
    const rid = /\$rid=([^&]+)/.exec(p.topic)![1]
    const payload = JSON.stringify(answer(JSON.parse(p.payload.toString() || 'null')))
    c.send({ cmd: 'publish', topic: `$iothub/methods/res/${status}/?$rid=${rid}`, payload: Buffer.from(payload), qos: 0, retain: false, dup: false } as mqttPacket.IPublishPacket)
    return p
  })
}

describe('the dashboard files', () => {
  it('are served to anyone with a strict content security policy, from a fixed list', async () => {
    const redirect = await t.rest('GET', '/dashboard', { token: null })
    expect({ status: redirect.status, location: redirect.headers.location }).toEqual({ status: 301, location: '/dashboard/' })
    const index = await t.rest('GET', '/dashboard/', { token: null, headers: { Host: `localhost:${t.hub.ports.https}` } })
    expect(index.status).toBe(200)
    expect(index.headers['content-type']).toBe('text/html; charset=utf-8')
    expect(index.headers['x-content-type-options']).toBe('nosniff')
    expect(index.headers['cache-control']).toBe('no-cache')
    expect(index.headers['content-security-policy']).toBe(`default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self' wss://localhost:${t.hub.ports.https}; `
      + "base-uri 'none'; form-action 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'")
    // a Host that would add directives to the policy is left out of it
    const odd = await t.rest('GET', '/dashboard/', { token: null, headers: { Host: "evil; script-src 'unsafe-inline'" } })
    expect(odd.headers['content-security-policy']).toMatch(/connect-src 'self'; base-uri/)
    const uplot = await t.rest('GET', '/dashboard/vendor/uPlot.iife.min.js', { token: null })
    expect({ status: uplot.status, type: uplot.headers['content-type'], uplot: uplot.text.includes('uPlot') }).toEqual({ status: 200, type: 'text/javascript; charset=utf-8', uplot: true })
    expect((await t.rest('GET', '/dashboard/vendor/uPlot.min.css', { token: null })).headers['content-type']).toBe('text/css; charset=utf-8')
    for (const path of ['/dashboard/nope.js', '/dashboard/%2e%2e/%2e%2e/%2e%2e/package.json', '/dashboard/..%2f..%2f..%2fpackage.json',
      '/dashboard/..%2f..%2frest%2fhub-error.ts', '/dashboard/vendor/..%2f..%2f..%2f..%2fpackage.json', '/dashboard/%2fetc%2fpasswd']) {
      const r = await t.rest('GET', path, { token: null })
      expect({ path, status: r.status, code: r.headers['iothub-errorcode'], message: /^ErrorCode:GenericNotFound;/.test(r.body?.Message) })
        .toEqual({ path, status: 404, code: 'GenericNotFound', message: true })
    }
  })
})

describe('the dashboard in a browser', { timeout: 30_000 }, () => {
  it('logs in with a connection string, signing tokens with WebCrypto; the key stays in session storage', async () => {
    await page.goto(`${base}/dashboard`)
    await page.waitForSelector('#connection-string')
    expect(await page.evaluate(() => isSecureContext && typeof crypto.subtle?.sign === 'function')).toBe(true)
    await shot('login')
    await page.fill('#connection-string', ownerConnectionString())
    await page.click('#login-sas-submit')
    await waitText('#devices-status', /^0 devices$/)
    const stored = await page.evaluate(() => ({ session: sessionStorage.getItem('hyperhub.session'), local: localStorage.length, cookies: document.cookie }))
    expect(JSON.parse(stored.session!)).toMatchObject({ kind: 'sas', keyName: 'iothubowner', hostName: 'localhost', verified: true })
    expect({ local: stored.local, cookies: stored.cookies }).toEqual({ local: 0, cookies: '' })
  })

  it('creates a device, and lists it with its connection state', async () => {
    await page.fill('#new-device-id', DEVICE)
    await page.click('#create-device-submit')
    await page.waitForSelector(`tr[data-device-id="${DEVICE}"]`)
    expect(t.hub.registry.get(DEVICE)?.status).toBe('enabled')
    device = await connectDevice(t, DEVICE)
    await device.subscribe('$iothub/twin/PATCH/properties/desired/#', 0)
    await device.subscribe('$iothub/methods/POST/#', 0)
    await page.click('#device-query-run')
    await waitText(`tr[data-device-id="${DEVICE}"]`, /Connected/)
    await page.fill('#device-query', "SELECT * FROM devices WHERE connectionState = 'Connected'")
    await page.click('#device-query-run')
    await waitText('#devices-status', /^1 device$/)
    await shot('devices')
    // deleting asks for a second click
    await t.createDevice('doomed')
    await page.fill('#device-query', 'SELECT * FROM devices')
    await page.click('#device-query-run')
    await waitText('#devices-status', /^2 devices$/)
    await page.click('tr[data-device-id="doomed"] [data-action=delete]')
    expect(await text('tr[data-device-id="doomed"] [data-action=delete]')).toBe('Confirm delete')
    expect(t.hub.registry.get('doomed')).toBeDefined()
    await page.click('tr[data-device-id="doomed"] [data-action=delete]')
    await waitText('#devices-status', /^Deleted doomed$/)
    expect(await page.locator('tr[data-device-id="doomed"]').count()).toBe(0)
    expect(t.hub.registry.get('doomed')).toBeUndefined()
  })

  it('lists a module query\'s rows as modules: their device linked, and no Delete (which would delete the device)', async () => {
    expect((await t.rest('PUT', `/devices/${DEVICE}/modules/sensor?api-version=2021-04-12`, { body: { deviceId: DEVICE, moduleId: 'sensor' } })).status).toBe(200)
    await page.fill('#device-query', 'SELECT * FROM devices.modules')
    await page.click('#device-query-run')
    await waitText('#devices-status', /^1 module$/)
    const row = page.locator(`tr[data-module-device-id="${DEVICE}"][data-module-id="sensor"]`)
    expect(await row.innerText()).toMatch(new RegExp(`^${DEVICE}\tsensor\t`))
    expect(await row.locator('a.device-link').getAttribute('href')).toBe(`#/device/${DEVICE}`)
    expect({ buttons: await page.locator('#module-table button').count(), deviceRows: await page.locator('#device-rows tr').count() }).toEqual({ buttons: 0, deviceRows: 0 })
    await page.fill('#device-query', 'SELECT * FROM devices')
    await page.click('#device-query-run')
    await waitText('#devices-status', /^1 device$/)
    expect(await page.locator('#module-table').isHidden()).toBe(true)
  })

  it('saves a desired property from the twin editor with its etag: the device gets the patch; a stale etag shows the 412', async () => {
    await page.click(`tr[data-device-id="${DEVICE}"] a.device-link`)
    await waitText('#twin-status', /^Read version 1/)
    await page.fill('#twin-editor', JSON.stringify({ tags: { site: 'north' }, properties: { desired: { targetTemperature: 21.5 } } }))
    const patch = nextPublish(device!, '$iothub/twin/PATCH/properties/desired/')
    await page.click('#twin-save')
    const pushed = await patch
    expect(JSON.parse(pushed.payload.toString())).toEqual({ targetTemperature: 21.5, $version: 2 })
    await waitText('#twin-status', /^Saved: version 2$/)
    // someone else changes the twin after the page read it: saving again must not overwrite it
    expect((await t.rest('PATCH', `/twins/${DEVICE}`, { body: { properties: { desired: { mode: 'eco' } } } })).status).toBe(200)
    await page.fill('#twin-editor', JSON.stringify({ tags: { site: 'north' }, properties: { desired: { targetTemperature: 19 } } }))
    await page.click('#twin-save')
    await waitText('#twin-status', /^412 PreconditionFailed: .+ reload it and edit again\.$/)
    const twin = (await t.rest('GET', `/twins/${DEVICE}`)).body
    expect({ target: twin.properties.desired.targetTemperature, mode: twin.properties.desired.mode }).toEqual({ target: 21.5, mode: 'eco' })
    await page.click('#twin-reload')
    await waitText('#twin-status', /^Read version 3/)
    expect(JSON.parse(await page.inputValue('#twin-editor'))).toEqual({ tags: { site: 'north' }, properties: { desired: { targetTemperature: 21.5, mode: 'eco' } } })
  })

  it('adds and removes twin keys named like Object.prototype\'s members: a key removed in the editor is deleted at the hub', async () => {
    const save = async (twin: string) => {
      await page.fill('#twin-editor', twin)
      await page.click('#twin-save')
      await waitText('#twin-status', /^Saved: version \d+$/)
      return (await t.rest('GET', `/twins/${DEVICE}`)).body
    }
    const desired = (d: Record<string, unknown>) => Object.fromEntries(Object.entries(d).filter(([k]) => !k.startsWith('$')))
    let twin = await save(JSON.stringify({ tags: { site: 'north', toString: 'a', constructor: 'b', hasOwnProperty: 'c', spare: 1 }, properties: { desired: { targetTemperature: 21.5, mode: 'eco', toString: 2 } } }))
    expect({ tags: twin.tags, desired: desired(twin.properties.desired) })
      .toEqual({ tags: { site: 'north', toString: 'a', constructor: 'b', hasOwnProperty: 'c', spare: 1 }, desired: { targetTemperature: 21.5, mode: 'eco', toString: 2 } })
    // removed: a plain key and toString, from the tags and from the desired properties
    twin = await save(JSON.stringify({ tags: { site: 'north', constructor: 'b', hasOwnProperty: 'c' }, properties: { desired: { targetTemperature: 21.5, mode: 'eco' } } }))
    expect({ tags: twin.tags, desired: desired(twin.properties.desired) })
      .toEqual({ tags: { site: 'north', constructor: 'b', hasOwnProperty: 'c' }, desired: { targetTemperature: 21.5, mode: 'eco' } })
    twin = await save(JSON.stringify({ tags: { site: 'north' }, properties: { desired: { targetTemperature: 21.5, mode: 'eco' } } }))
    expect(twin.tags).toEqual({ site: 'north' })
    // __proto__ is sent as a key of its own (what the hub makes of it is the hub's business)
    const sent = page.waitForRequest((r) => r.method() === 'PATCH')
    await page.fill('#twin-editor', '{"tags": {"site": "north", "__proto__": {"x": 1}}, "properties": {"desired": {"targetTemperature": 21.5, "mode": "eco"}}}')
    await page.click('#twin-save')
    expect((await sent).postData()).toBe('{"tags":{"__proto__":{"x":1}}}')
    // which the hub refuses, in Azure's words, and the twin stays as it was
    await waitText('#twin-status', /^400 ArgumentInvalid: the property name __proto__ is not supported/)
    await page.click('#twin-reload')
    await waitText('#twin-status', /^Read version/)
    expect(JSON.parse(await page.inputValue('#twin-editor'))).toEqual({ tags: { site: 'north' }, properties: { desired: { targetTemperature: 21.5, mode: 'eco' } } })
  })

  it('invokes a direct method and shows the device\'s status and payload', async () => {
    const answered = answerNextMethod(device!, 200, (req) => ({ applied: (req as { mode: string }).mode, by: DEVICE }))
    await page.fill('#method-name', 'setMode')
    await page.fill('#method-payload', '{"mode": "boost"}')
    await page.click('#method-invoke')
    expect((await answered).topic).toMatch(/^\$iothub\/methods\/POST\/setMode\/\?\$rid=/)
    await waitText('#method-status', /^The device answered status 200$/)
    expect(JSON.parse(await text('#method-result'))).toEqual({ applied: 'boost', by: DEVICE })
    const refused = answerNextMethod(device!, 500, () => ({ error: 'busy' }))
    await page.click('#method-invoke')
    await refused
    await waitText('#method-status', /^The device answered status 500$/)
  })

  it('sends a cloud-to-device message with its body and application properties', async () => {
    await device!.subscribe(`devices/${DEVICE}/messages/devicebound/#`, 1)
    const delivered = nextPublish(device!, `devices/${DEVICE}/messages/devicebound/`)
    await page.fill('#c2d-body', 'turn on the fan')
    await page.fill('#c2d-properties', '{"priority": "high", "zone": "b 2"}')
    await page.click('#c2d-send')
    const p = await delivered
    device!.send({ cmd: 'puback', messageId: p.messageId } as mqttPacket.IPubackPacket)
    expect(p.payload.toString()).toBe('turn on the fan')
    const bag = new URLSearchParams(p.topic.slice(`devices/${DEVICE}/messages/devicebound/`.length))
    expect({ priority: bag.get('priority'), zone: bag.get('zone') }).toEqual({ priority: 'high', zone: 'b 2' })
    await waitText('#c2d-status', /^Queued for the device$/)
    await page.fill('#c2d-properties', '{"bad name": "x"}')
    await page.click('#c2d-send')
    await waitText('#c2d-status', /is not an HTTP token/)
  })

  it('plots the device\'s numeric telemetry fields and lists its events, and no other device\'s', async () => {
    await waitText('#telemetry-status', /^Live: waiting for telemetry from dash-dev$/)
    const other = await connectDevice(t, 'other-dev')
    await other.publish('devices/other-dev/messages/events/', JSON.stringify({ temperature: 99, marker: 'not this one' }))
    await other.disconnect()
    for (const [i, temperature] of [21.25, 21.75, 22.5].entries()) {
      await device!.publish(`devices/${DEVICE}/messages/events/level=info&seq=${i}`, JSON.stringify({ temperature, humidity: 40 + i, label: 'kitchen' }))
    }
    await page.waitForFunction(() => document.querySelectorAll('#telemetry-rows tr').length === 3)
    await waitText('#telemetry-status', /^Live: 3 points from dash-dev$/)
    const rows = await page.locator('#telemetry-rows tr').allInnerTexts()
    expect(rows[0]).toContain('{"temperature":22.5,"humidity":42,"label":"kitchen"}')
    expect(rows[0]).toContain('"level":"info"')
    expect(rows[0]).toContain('"seq":"2"')
    expect(rows.join('\n')).not.toContain('not this one')
    expect({ temperature: await legendValue('#telemetry-chart', 'temperature'), humidity: await legendValue('#telemetry-chart', 'humidity'), label: await legendValue('#telemetry-chart', 'label') })
      .toEqual({ temperature: '22.5', humidity: '42', label: null })
    await shot('device')
  })

  it('shows markup a device sends as text: no element is created', async () => {
    const markup = '<img src=x onerror="window.__pwned=1">'
    await device!.publish(`devices/${DEVICE}/messages/events/`, JSON.stringify({ x: markup, '<b id="field">bold</b>': 1 }))
    await waitText('#telemetry-rows tr:first-child', /<img src=x onerror=/)
    const reported = nextPublish(device!, '$iothub/twin/res/')
    device!.send({ cmd: 'publish', topic: '$iothub/twin/PATCH/properties/reported/?$rid=9', payload: Buffer.from(JSON.stringify({ note: markup })), qos: 0, retain: false, dup: false } as mqttPacket.IPublishPacket)
    await reported
    await page.click('#twin-reload')
    await waitText('#twin-reported', /<img src=x onerror=/)
    const answered = answerNextMethod(device!, 200, () => ({ html: markup }))
    await page.click('#method-invoke')
    await answered
    await waitText('#method-result', /<img src=x onerror=/)
    expect(await page.evaluate(() => ({
      images: document.querySelectorAll('img').length, bold: document.querySelectorAll('#telemetry b, #field').length,
      pwned: window.__pwned ?? null,
    }))).toEqual({ images: 0, bold: 0, pwned: null })
    expect(await legendValue('#telemetry-chart', '<b id="field">bold</b>')).toBe('1')
  })

  it('renews the stream with a token of its own before it expires, from the next sequence number: no event lost or shown twice', async () => {
    await page.evaluate(() => sessionStorage.setItem('hyperhub.streamTokenSeconds', '6'))
    const first = await openDevicePage()
    const url = new URL(first.url())
    expect({ device: url.searchParams.get('devicePartition'), from: url.searchParams.get('from') }).toEqual({ device: DEVICE, from: 'latest' })
    // a token of its own, for the stream's lifetime only (the REST token lasts an hour)
    const se = Number(new URLSearchParams(url.searchParams.get('authorization')!.replace(/^SharedAccessSignature /, '')).get('se'))
    expect(se - Date.now() / 1000).toBeLessThan(7)
    const sent = await sendUntil(() => streams.length > streams.indexOf(first) + 1, 10)
    const second = streams.at(-1)!
    expect({ from: new URL(second.url()).searchParams.get('fromSequenceNumber'), firstClosed: first.isClosed() }).toEqual({ from: expect.stringMatching(/^\d+$/), firstClosed: true })
    await expectShown(sent)
    await page.evaluate(() => sessionStorage.removeItem('hyperhub.streamTokenSeconds'))
  })

  it('reconnects by itself after the hub closes the stream for an expired token (1008), from the next sequence number', async () => {
    // the hub takes a token up to 300 s past its expiry: this one's stream is closed a second or two after it opens
    await page.evaluate(() => sessionStorage.setItem('hyperhub.streamTokenSeconds', '-298'))
    const first = await openDevicePage()
    const sent = await sendUntil(() => first.isClosed() && streams.length > streams.indexOf(first) + 1, 5)
    expect(await page.getAttribute('#telemetry-status', 'data-last-close')).toBe('1008 SAS token expired')
    expect(new URL(streams[streams.indexOf(first) + 1]!.url()).searchParams.get('fromSequenceNumber')).toMatch(/^\d+$/)
    await expectShown(sent)
    await page.evaluate(() => sessionStorage.removeItem('hyperhub.streamTokenSeconds'))
  })

  it('says why when the hub refuses the stream: 64 readers at once', async () => {
    await page.click('#nav-devices')
    const readers = await Promise.all(Array.from({ length: 64 }, () => new Promise<NodeWebSocket>((resolve, reject) => {
      const ws = new NodeWebSocket(`wss://localhost:${t.hub.ports.https}/messages/events/stream?from=latest`, { ca: t.ca, headers: { Authorization: t.serviceToken('service') } })
      ws.once('open', () => resolve(ws))
      ws.once('error', reject)
    })))
    try {
      const errors = pageErrors.length
      await page.click(`tr[data-device-id="${DEVICE}"] a.device-link`)
      await waitText('#telemetry-status', /^The hub refused the stream \(it allows 64 readers at once, or the token lacks ServiceConnect\)$/)
      // the browser reports the refused handshake on the console: that one is expected
      const unexpected = pageErrors.splice(errors).filter((e) => !/^WebSocket connection to .* failed.*429/.test(e))
      expect(unexpected).toEqual([])
      await new Promise((r) => { readers.pop()!.once('close', r).close() })
      await page.click('#telemetry-reconnect')
      await waitText('#telemetry-status', /^Live: /)
    } finally {
      for (const ws of readers) ws.close()
    }
  })

  it('shows 404103 for a method on a device that went offline', async () => {
    await device!.disconnect()
    device = undefined
    await until(() => t.hub.edge.connectionState(DEVICE).connected, (c) => !c)
    await page.click('#method-invoke')
    await waitText('#method-status', /^404 DeviceNotOnline: .*not online/)
  })

  it('closes the event stream when the device page is left, and charts /metrics on the hub page', async () => {
    const stream = streams.at(-1)!
    expect(stream.isClosed()).toBe(false)
    const closed = stream.waitForEvent('close')
    await page.click('#nav-hub')
    await closed
    // a device sending all along, so each 2-second poll sees a rate
    const pump = await connectDevice(t, 'pump-dev')
    let pumping = true
    const sending = (async () => {
      for (let i = 0; pumping; i++) {
        await pump.publish('devices/pump-dev/messages/events/', JSON.stringify({ i }))
        await new Promise((r) => setTimeout(r, 100))
      }
    })()
    try {
      await waitText('#hub-status', /^Updated .* · 1 device connected$/)
      await page.waitForFunction(() => {
        for (const row of document.querySelectorAll('#chart-rates .u-legend .u-series')) {
          if (row.querySelector('.u-label')?.textContent === 'telemetry in') return Number(row.querySelector('.u-value')?.textContent) > 0
        }
        return false
      }, undefined, { timeout: 15_000 })
      // two more polls, so the charts have a few points to show
      for (let i = 0; i < 2; i++) {
        const was = await text('#hub-status')
        await page.waitForFunction((w) => document.querySelector('#hub-status')?.textContent !== w, was)
      }
      expect(await legendValue('#chart-connections', 'tcp')).toBe('1')
      expect(await text('#tier-name')).toBe('unlimited × 1')
      await waitText('#quota-line', /^\d[\d,]* of unlimited messages used on \d{4}-\d\d-\d\d \(UTC\)/)
      await shot('hub')
    } finally {
      pumping = false
      await sending
      await pump.disconnect()
    }
  }, 40_000)

  it('lists routing and tests conditions on the hub\'s evaluator', async () => {
    await t.rest('PUT', '/routing/endpoints/logs/alerts', { body: {} })
    await t.rest('PUT', '/routing/routes/hot', { body: { source: 'DeviceMessages', condition: '$body.temperature > 30', endpointNames: ['alerts'] } })
    await t.rest('PUT', '/routing/routes/critical', { body: { source: 'DeviceMessages', condition: "level = 'critical'", endpointNames: ['alerts'] } })
    await t.rest('PUT', '/routing/enrichments/site', { body: { value: '$twin.tags.site', endpointNames: ['alerts'] } })
    leavingHub = 'leaving'
    await page.click('#nav-routes')
    await waitText('#routes-status', /^2 routes, 1 custom endpoints, 1 enrichments$/)
    expect(await page.locator('#routes-table tbody tr').allInnerTexts()).toEqual([
      expect.stringMatching(/^hot\tDeviceMessages\t\$body\.temperature > 30\talerts\tyes/),
      expect.stringMatching(/^critical\tDeviceMessages\tlevel = 'critical'\talerts\tyes/),
    ])
    expect(await text('#fallback-route')).toBe('Fallback route: enabled → events (device messages no route matched)')
    await page.fill('#test-condition', '$body.temperature >')
    await page.click('#test-one')
    await waitText('#test-status', /^Result: undefined$/)
    expect(await text('#test-errors')).toBe('error: Syntax error at line 1, column 20: unexpected end of input: expected an expression')
    await page.fill('#test-condition', '$body.temperature > 30')
    await page.fill('#test-body', '{"temperature": 35}')
    await page.fill('#test-app-properties', '{"level": "info"}')
    await page.click('#test-one')
    await waitText('#test-status', /^Result: true$/)
    await page.fill('#test-body', '{"temperature": 25}')
    await page.click('#test-one')
    await waitText('#test-status', /^Result: false$/)
    await page.fill('#test-body', '{"temperature": 35}')
    await page.fill('#test-app-properties', '{"level": "critical"}')
    await page.click('#test-all')
    await waitText('#test-status', /^Matching routes: hot, critical$/)
    await shot('routes')
  })

  it('stopped polling /metrics when the hub page was left', async () => {
    expect(leavingHub).toBe('left')
    // once every poll under way has finished, none can set a timer for another
    await until(() => pollsUnderWay.size, (n) => n === 0)
    // markers: a timer set now for the poll interval fires after any timer the hub page had set, and a
    // request the page makes after it comes after any request such a timer made
    await page.evaluate(() => new Promise((r) => setTimeout(r, 2000)))
    expect(await page.evaluate(() => fetch('/health').then((r) => r.status))).toBe(200)
    expect(pollsAfterLeaving).toBe(0)
  })

  it('logs out, and refuses a wrong key with the hub\'s 401 message', async () => {
    await page.click('#logout')
    await page.waitForSelector('#connection-string')
    expect(await page.evaluate(() => sessionStorage.getItem('hyperhub.session'))).toBeNull()
    const wrongKey = Buffer.alloc(32, 7).toString('base64')
    await page.fill('#connection-string', ownerConnectionString(wrongKey))
    await page.click('#login-sas-submit')
    await waitText('#login-status', /^The hub refused these credentials: 401 IotHubUnauthorized: Unauthorized: signature does not match$/)
    expect(await page.evaluate(() => sessionStorage.getItem('hyperhub.session'))).toBeNull()
    await page.fill('#connection-string', `HostName=localhost;DeviceId=${DEVICE};SharedAccessKey=${wrongKey}`)
    await page.click('#login-sas-submit')
    await waitText('#login-status', /device's connection string/)
  })

  it('logs in with a bearer token and says live telemetry needs a policy', async () => {
    const token = await signRoleToken(await ensureLocalIssuerKey(t.dataDir), { roles: ['IoT Hub Data Contributor'] })
    await page.fill('#bearer-token', token)
    await page.click('#login-bearer-submit')
    await page.waitForSelector(`tr[data-device-id="${DEVICE}"]`)
    await page.click(`tr[data-device-id="${DEVICE}"] a.device-link`)
    await waitText('#telemetry-status', /^Live telemetry needs a shared access policy login/)
    await waitText('#twin-status', /^Read version/)
  })

  it('logs in with policies and roles that lack ServiceConnect; each page shows the hub\'s refusal for what they cannot do', async () => {
    await logInWith('sas', policyConnectionString('service'))
    await waitText('#devices-status', /^\d+ devices?$/)
    expect(JSON.parse((await page.evaluate(() => sessionStorage.getItem('hyperhub.session')))!)).toMatchObject({ keyName: 'service', verified: true })
    await page.fill('#new-device-id', 'by-service')
    await page.click('#create-device-submit')
    await waitText('#create-status', /^401 IotHubUnauthorized: Authorization rule 'service' does not allow access for 'RegistryWrite'$/)
    // no ServiceConnect: the query is refused for rights, so the registry's list is shown
    await logInWith('sas', policyConnectionString('registryReadWrite'))
    await waitText('#devices-status', /^\d+ devices? from the registry \(GET \/devices, at most 1000\): the query was refused \(401 IotHubUnauthorized: Authorization rule 'registryReadWrite' does not allow access for 'ServiceConnect'\)$/)
    expect(await page.locator(`tr[data-device-id="${DEVICE}"]`).count()).toBe(1)
    await page.fill('#new-device-id', 'by-registry')
    await page.click('#create-device-submit')
    await waitText('#create-status', /^Created by-registry$/)
    expect(t.hub.registry.get('by-registry')).toBeDefined()
    await page.click(`tr[data-device-id="${DEVICE}"] a.device-link`)
    const noServiceConnect = "401 IotHubUnauthorized: Authorization rule 'registryReadWrite' does not allow access for 'ServiceConnect'"
    await waitText('#twin-status', new RegExp(`^${noServiceConnect}$`))
    await waitText('#telemetry-status', new RegExp(`^Live telemetry: ${noServiceConnect}$`))
    await page.click('#nav-hub')
    await waitText('#hub-status', /^\/metrics: 401 IotHubUnauthorized: Authorization rule 'registryReadWrite' does not allow access for 'ServiceConnect'$/)
    // a role for devices only
    await logInWith('bearer', await signRoleToken(await ensureLocalIssuerKey(t.dataDir), { roles: ['IoT Hub Registry Contributor'] }))
    await waitText('#devices-status', /from the registry .*: the query was refused \(401 IotHubUnauthorized: Principal local-user is not authorized for POST on \/devices\/query due to no assigned permissions\)$/)
    await page.click('tr[data-device-id="by-registry"] [data-action=delete]')
    await page.click('tr[data-device-id="by-registry"] [data-action=delete]')
    await waitText('#devices-status', /^Deleted by-registry$/)
    expect(t.hub.registry.get('by-registry')).toBeUndefined()
    // the management Owner role: routing, not the registry
    await logInWith('bearer', await signRoleToken(await ensureLocalIssuerKey(t.dataDir), { roles: ['Owner'] }))
    await waitText('#devices-status', /^The query: 401 .* is not authorized for POST on \/devices\/query .*The registry's list: 401 .* is not authorized for GET on \/devices\//)
    await page.click('#nav-routes')
    await waitText('#routes-status', /^\d+ routes, /)
  })

  it('logs a bearer login out when its token expires, saying so', async () => {
    // the hub tolerates 300 s of clock skew: this token is refused 4 s from now
    const token = await signRoleToken(await ensureLocalIssuerKey(t.dataDir), { roles: ['IoT Hub Data Contributor'], ttlSeconds: -296 })
    await logInWith('bearer', token)
    await waitText('#devices-status', /^\d+ devices?$/)
    await page.click('#nav-hub')
    await waitText('#hub-status', /^Updated /)
    await page.waitForSelector('#connection-string', { timeout: 15_000 })
    await waitText('#login-status', /^Your token expired; log in again$/)
    expect(await page.evaluate(() => sessionStorage.getItem('hyperhub.session'))).toBeNull()
  })

  it('opens the device "..", which no URL path holds: its twin read with the query and saved with a bulk operation and its etag', async () => {
    await t.createDevice('..')
    await logInWith('sas', ownerConnectionString())
    await page.waitForSelector('tr[data-device-id=".."]')
    await page.click('tr[data-device-id=".."] a.device-link')
    await waitText('#device-title', /^\.\.$/)
    await waitText('#twin-status', /^Read version 1 /)
    await page.fill('#twin-editor', JSON.stringify({ tags: { dots: 'yes' }, properties: { desired: { level: 1 } } }))
    await page.click('#twin-save')
    await waitText('#twin-status', /^Saved: version 2$/)
    const twin = (await t.rest('GET', '/twins/..')).body
    expect({ id: twin.deviceId, tags: twin.tags, level: twin.properties.desired.level }).toEqual({ id: '..', tags: { dots: 'yes' }, level: 1 })
    expect(t.hub.registry.get('.')).toBeUndefined()
    // a change made meanwhile is not overwritten
    await t.rest('PATCH', '/twins/..', { body: { tags: { dots: 'changed' } } })
    await page.fill('#twin-editor', JSON.stringify({ tags: { dots: 'mine' }, properties: { desired: { level: 1 } } }))
    await page.click('#twin-save')
    await waitText('#twin-status', /^412 PreconditionFailed: .* reload it and edit again\.$/)
    expect((await t.rest('GET', '/twins/..')).body.tags).toEqual({ dots: 'changed' })
    // methods and messages take the id in the path only
    expect({ method: await text('#method-status'), disabled: await page.locator('#method-invoke').isDisabled() })
      .toEqual({ method: 'A browser cannot put the device id ".." in a URL path (it drops "." and ".." segments): use an SDK or curl for this.', disabled: true })
    // created and deleted from the list, with bulk operations
    await page.click('#nav-devices')
    await page.fill('#new-device-id', '.')
    await page.click('#create-device-submit')
    await waitText('#create-status', /^Created \.$/)
    expect(t.hub.registry.get('.')).toBeDefined()
    for (const id of ['.', '..']) {
      await page.click(`tr[data-device-id="${id}"] [data-action=delete]`)
      await page.click(`tr[data-device-id="${id}"] [data-action=delete]`)
      await waitText('#devices-status', new RegExp(`^Deleted ${id.replace(/\./g, '\\.')}$`))
      expect(t.hub.registry.get(id)).toBeUndefined()
    }
    expect(t.hub.registry.get(DEVICE)).toBeDefined()
  })

  it('raised no script error and broke no content security policy rule', () => {
    expect(pageErrors).toEqual([])
  })
})
