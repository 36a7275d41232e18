// ARM's route test APIs (routing.md "Test APIs"): `$testnew` evaluates one route and `$testall` the
// hub's enabled routes of a source against a sample message and twin, on the hub's WASM route VM,
// with Azure's result shape and compilation errors; owner only; nothing is routed; repeated tests
// neither grow the VM's memory nor the hub's name interner.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestHub, type TestHub } from './helpers/test-hub.js'
import { connectDevice, until } from './helpers/device-mqtt.js'
import { ensureLocalIssuerKey, signRoleToken } from '../src/auth/local-issuer.js'
import { defaultInterner } from '../src/routing/name-interner.js'
import { wasm } from '../src/wasm/hyperhub-wasm.js'
import { testCondition } from '../src/routing/route-tester.js'

let t: TestHub
beforeAll(async () => {
  t = await startTestHub()
  await t.rest('PUT', '/routing/endpoints/logs/critical', { body: {} })
  const routes = [
    { name: 'hot', source: 'DeviceMessages', condition: "level = 'critical' AND $body.temperature > 30", endpointNames: ['critical'], isEnabled: true },
    { name: 'everything-off', source: 'DeviceMessages', condition: 'true', endpointNames: ['critical'], isEnabled: false },
    { name: 'by-site', source: 'DeviceMessages', condition: "$twin.tags.site = 'north'", endpointNames: ['events'], isEnabled: true },
    { name: 'twins', source: 'TwinChangeEvents', condition: 'true', endpointNames: ['critical'], isEnabled: true },
  ]
  for (const r of routes) expect((await t.rest('PUT', `/routing/routes/${r.name}`, { body: r })).status).toBe(200)
})
afterAll(async () => { await t?.stop() })

const JSON_MESSAGE = { contentType: 'application/json', contentEncoding: 'utf-8' }
const route = (condition: string) => ({ name: 'probe', source: 'DeviceMessages', condition, endpointNames: ['events'], isEnabled: true })
const testNew = (body: unknown, token?: string | null) => t.rest('POST', '/routing/routes/$testnew?api-version=2021-07-02', { body, token })
const testAll = (body: unknown, token?: string | null) => t.rest('POST', '/routing/routes/$testall?api-version=2021-07-02', { body, token })
const ok = (result: string) => ({ result, details: { compilationErrors: [] } })

describe('$testnew', () => {
  it('answers true, false or undefined for one route, reading body, properties and twin', async () => {
    const message = (temperature: unknown, level = 'critical') => ({ body: JSON.stringify({ temperature }), appProperties: { level }, systemProperties: JSON_MESSAGE })
    const cond = "level = 'critical' AND $body.temperature > 30"
    expect((await testNew({ message: message(35), route: route(cond) })).body).toEqual(ok('true'))
    expect((await testNew({ message: message(20), route: route(cond) })).body).toEqual(ok('false'))
    expect((await testNew({ message: message(35, 'info'), route: route(cond) })).body).toEqual(ok('false'))
    // a property the message lacks, or a type mismatch, is neither true nor false
    expect((await testNew({ message: message(35), route: route('$body.humidity > 30') })).body).toEqual(ok('undefined'))
    expect((await testNew({ message: message('hot'), route: route('$body.temperature > 30') })).body).toEqual(ok('undefined'))
    // $body is off limits unless the message says it is JSON
    expect((await testNew({ message: { body: '{"temperature":35}' }, route: route('$body.temperature > 30') })).body).toEqual(ok('undefined'))
    const twin = { tags: { site: 'north' }, properties: { desired: { mode: 'eco' }, reported: { fw: '1.2' } } }
    expect((await testNew({ message: {}, twin, route: route("$twin.tags.site = 'north' AND $twin.properties.reported.fw = '1.2'") })).body).toEqual(ok('true'))
    expect((await testNew({ message: {}, route: route("$twin.tags.site = 'north'") })).body).toEqual(ok('undefined'))
    // system properties by keyword, and the default condition
    expect((await testNew({ message: { systemProperties: { messageId: 'm-1' } }, route: route("$messageId = 'm-1'") })).body).toEqual(ok('true'))
    expect((await testNew({ message: {}, route: { name: 'probe', source: 'DeviceMessages', endpointNames: ['events'], isEnabled: true } })).body).toEqual(ok('true'))
  })

  it('reports a condition that does not compile with its position, and result undefined', async () => {
    const r = await testNew({ message: {}, route: route("level = 'a' AND") })
    expect(r.status).toBe(200)
    expect(r.body).toEqual({
      result: 'undefined',
      details: { compilationErrors: [{ message: 'Syntax error at line 1, column 16: unexpected end of input: expected an expression', severity: 'error', location: { start: { line: 1, column: 16 }, end: { line: 1, column: 16 } } }] },
    })
    const twoLines = await testNew({ message: {}, route: route('true AND\n  x = = 1') })
    expect(twoLines.body.details.compilationErrors).toEqual([{ message: "Syntax error at line 2, column 7: unexpected '=': expected an expression", severity: 'error', location: { start: { line: 2, column: 7 }, end: { line: 2, column: 7 } } }])
  })

  it('takes $ percent-encoded, and refuses malformed input with 400', async () => {
    expect((await t.rest('POST', '/routing/routes/%24testnew', { body: { route: route('true') } })).body).toEqual(ok('true'))
    const refused = async (body: unknown) => {
      const r = await testNew(body)
      return { status: r.status, code: r.headers['iothub-errorcode'] }
    }
    const argumentInvalid = { status: 400, code: 'ArgumentInvalid' }
    expect(await refused({ message: {} })).toEqual(argumentInvalid)
    expect(await refused({ route: { ...route('true'), source: 'Nowhere' } })).toEqual(argumentInvalid)
    expect(await refused({ route: { ...route('true'), condition: 7 } })).toEqual(argumentInvalid)
    expect(await refused({ route: route('true'), message: { body: { temperature: 1 } } })).toEqual(argumentInvalid)
    expect(await refused({ route: route('true'), message: { appProperties: { n: 1 } } })).toEqual(argumentInvalid)
    expect(await refused({ route: route('true'), twin: [] })).toEqual(argumentInvalid)
    expect(await refused([])).toEqual(argumentInvalid)
  })
})

describe('$testall', () => {
  it('answers the enabled routes of the source that match, as ARM lists them', async () => {
    const hot = { body: '{"temperature":35}', appProperties: { level: 'critical' }, systemProperties: JSON_MESSAGE }
    const r = await testAll({ routingSource: 'DeviceMessages', message: hot, twin: { tags: { site: 'south' } } })
    expect(r.status).toBe(200)
    expect(r.body).toEqual({ routes: [{ properties: { name: 'hot', source: 'DeviceMessages', condition: "level = 'critical' AND $body.temperature > 30", endpointNames: ['critical'], isEnabled: true } }] })
    const both = await testAll({ routingSource: 'DeviceMessages', message: hot, twin: { tags: { site: 'north' } } })
    expect(both.body.routes.map((m: { properties: { name: string } }) => m.properties.name)).toEqual(['hot', 'by-site'])
    expect((await testAll({ routingSource: 'TwinChangeEvents', message: {} })).body.routes.map((m: { properties: { name: string } }) => m.properties.name)).toEqual(['twins'])
    // DeviceMessages by default; no match is an empty list
    expect((await testAll({ message: { appProperties: { level: 'info' } } })).body).toEqual({ routes: [] })
    expect((await testAll({ routingSource: 'Elsewhere' })).status).toBe(400)
  })
})

describe('the route test APIs', () => {
  it('route nothing: after a test, a real message is the only one the route\'s endpoint and the built-in endpoint hold', async () => {
    const hot = { body: '{"temperature":35}', appProperties: { level: 'critical' }, systemProperties: JSON_MESSAGE }
    expect((await testAll({ message: hot })).body.routes.map((m: { properties: { name: string } }) => m.properties.name)).toEqual(['hot'])
    expect((await testNew({ message: hot, route: route('true') })).body).toEqual(ok('true'))
    // markers sent for real after the tests: one the route 'hot' takes to 'critical', one no route
    // matches, which the fallback route takes to the built-in endpoint
    const device = await connectDevice(t, 'route-marker')
    try {
      await device.publish('devices/route-marker/messages/events/level=critical&$.ct=application%2Fjson&$.ce=utf-8', '{"temperature":36,"marker":"routed"}', 1)
      await device.publish('devices/route-marker/messages/events/level=info', 'fallback marker', 1)
    } finally {
      await device.disconnect()
    }
    const bodies = async (base: string) => {
      const out: string[] = []
      for (const p of [0, 1, 2, 3]) {
        const r = await t.rest('GET', `${base}/partitions/${p}/events?from=earliest`)
        out.push(...r.body.events.map((e: { body: string }) => Buffer.from(e.body, 'base64').toString()))
      }
      return out
    }
    const routed = '{"temperature":36,"marker":"routed"}'
    expect(await until(() => bodies('/messages/endpoints/critical'), (b) => b.includes(routed))).toEqual([routed])
    expect(await until(() => bodies('/messages/events'), (b) => b.includes('fallback marker'))).toEqual(['fallback marker'])
  })

  it('are the owner\'s alone: other policies and roles get Azure\'s 401', async () => {
    const key = await ensureLocalIssuerKey(t.dataDir)
    const contributor = `Bearer ${await signRoleToken(key, { roles: ['IoT Hub Data Contributor'] })}`
    for (const token of [t.serviceToken('service'), t.serviceToken('registryReadWrite'), contributor, null]) {
      for (const call of [testNew, testAll]) {
        const r = await call({ route: route('true') }, token)
        expect({ status: r.status, code: r.headers['iothub-errorcode'] }).toEqual({ status: 401, code: 'IotHubUnauthorized' })
      }
    }
  })

  it('grow neither the route VM\'s memory nor the hub\'s name interner however many conditions are tried', async () => {
    const interned = defaultInterner.size
    testCondition('$body.warmup = 1', { body: '{}', systemProperties: JSON_MESSAGE })
    const memory = wasm.memory.buffer.byteLength
    for (let i = 0; i < 2000; i++) {
      const r = testCondition(`$body.field${i} = ${i} AND prop${i} = 'x'`, { body: JSON.stringify({ [`field${i}`]: i }), appProperties: { [`prop${i}`]: 'x' }, systemProperties: JSON_MESSAGE })
      if (r.result !== 'true') throw new Error(`condition ${i}: ${r.result}`)
    }
    expect(wasm.memory.buffer.byteLength).toBe(memory)
    expect((await testNew({ message: {}, route: route("never_seen_before_name = 'x'") })).body).toEqual(ok('undefined'))
    expect(defaultInterner.size).toBe(interned)
  })
})
