// Issue 16: the digital twin API's error paths over REST, as a hostile caller tries them: JSON Patch
// paths that would reach an object's prototype, nest deeper than a twin may, or name `$` properties
// are refused with 400 and change nothing; the hub keeps answering as before.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestHub, type TestHub } from './helpers/test-hub.js'

let t: TestHub
beforeAll(async () => { t = await startTestHub() })
afterAll(async () => { await t?.stop() })

const dt = (id: string) => `/digitaltwins/${id}?api-version=2021-04-12`

describe('digital twin patches from a hostile caller', () => {
  it('refuses __proto__, over-deep and $ paths with 400, writes nothing, and the hub is unharmed', async () => {
    await t.createDevice('dt-hostile')
    const before = await t.rest('GET', '/twins/dt-hostile?api-version=2021-04-12')
    for (const [path, why] of [
      ['/__proto__/content-length', 'the property name __proto__ is not supported'],
      ['/x/__proto__/if-match', 'the property name __proto__ is not supported'],
      [`/${Array.from({ length: 11 }, (_, i) => `p${i}`).join('/')}`, 'deeper than 10 levels'],
      ['/$version', "must not contain control characters, '.', '$' or spaces"],
      ['/a//b', 'empty property name'],
    ] as const) {
      const r = await t.rest('PATCH', dt('dt-hostile'), { body: [{ op: 'add', path, value: '99999999' }] })
      expect({ path, status: r.status, code: r.headers['iothub-errorcode'], why: r.body.Message.includes(why) }).toEqual({ path, status: 400, code: 'ArgumentInvalid', why: true })
    }
    // a path of 5000 names (a 10 KB body) is refused, not built
    const deep = await t.rest('PATCH', dt('dt-hostile'), { body: [{ op: 'add', path: '/a'.repeat(5000), value: 1 }] })
    expect(deep.status).toBe(400)
    // nothing changed, and body-less requests still answer (a polluted prototype broke them)
    const after = await t.rest('GET', '/twins/dt-hostile?api-version=2021-04-12')
    expect([after.status, after.body.etag]).toEqual([200, before.body.etag])
    expect(({} as Record<string, unknown>)['content-length']).toBeUndefined()
    expect((await t.rest('GET', dt('dt-hostile'))).status).toBe(200)
  })
})

describe('a module\'s digital twin', () => {
  it('is read and written as {device}~{module}; an unknown module is 404 ModuleNotFound', async () => {
    await t.createDevice('dt-mod-dev')
    expect((await t.rest('PUT', '/devices/dt-mod-dev/modules/sensor?api-version=2021-04-12', { body: {} })).status).toBe(200)
    const patched = await t.rest('PATCH', dt('dt-mod-dev~sensor'), { body: [{ op: 'add', path: '/interval', value: 5 }] })
    expect(patched.status).toBe(202)
    const got = await t.rest('GET', dt('dt-mod-dev~sensor'))
    expect([got.status, got.body.$dtId, got.body.$metadata.interval.desiredValue]).toEqual([200, 'dt-mod-dev~sensor', 5])
    const moduleTwin = await t.rest('GET', '/twins/dt-mod-dev/modules/sensor?api-version=2021-04-12')
    expect(moduleTwin.body.properties.desired.interval).toBe(5)
    expect((await t.rest('GET', '/twins/dt-mod-dev?api-version=2021-04-12')).body.properties.desired.interval).toBeUndefined()
    const missing = await t.rest('GET', dt('dt-mod-dev~nobody'))
    expect([missing.status, missing.headers['iothub-errorcode']]).toEqual([404, 'ModuleNotFound'])
  })
})
