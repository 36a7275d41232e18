// Issue 16: the configurations REST API's error paths, as Azure answers them: bad ids, content and
// priorities (400), a stale etag (412), the limit of 100 (413101), an unknown one (404301), and
// testQueries reporting each query's syntax error without storing anything; stored configurations that
// break the rules are not loaded.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { open } from 'lmdb'
import { startTestHub, tempDir, type TestHub } from './helpers/test-hub.js'
import { ConfigurationStore, MAX_CONFIGURATIONS } from '../src/configurations/configuration-store.js'

let t: TestHub
beforeAll(async () => { t = await startTestHub() })
afterAll(async () => { await t?.stop() })

const path = (id: string) => `/configurations/${encodeURIComponent(id)}?api-version=2021-04-12`
const err = (r: { status: number; headers: Record<string, unknown>; body: any }) => ({ status: r.status, code: r.headers['iothub-errorcode'], message: r.body?.Message })
const good = { content: { deviceContent: { 'properties.desired.x': 1 } }, targetCondition: "tags.a='b'", priority: 2 }

describe('configurations stored before today\'s rules', () => {
  it('are not loaded when they break them (a __proto__ or 5000-name path saved by an older hub)', async () => {
    const dir = tempDir('hyperhub-cfg-load-')
    const db = open({ path: join(dir, 'c.mdb') })
    const record = (id: string, deviceContent: Record<string, unknown>) => ({ id, content: { deviceContent }, targetCondition: '*', priority: 0, etag: 'MQ==', metrics: { queries: {} }, results: { system: {}, custom: {} } })
    await db.put('bad-proto', record('bad-proto', { 'properties.desired.__proto__.content-length': 9 }))
    await db.put('bad-deep', record('bad-deep', { [`properties.desired${'.a'.repeat(5000)}`]: 1 }))
    await db.put('fine', record('fine', { 'properties.desired.x': 1 }))
    const refused: string[] = []
    const store = new ConfigurationStore(db, undefined, (id) => refused.push(id))
    expect([store.all().map((c) => c.id), refused.sort()]).toEqual([['fine'], ['bad-deep', 'bad-proto']])
    expect(({} as Record<string, unknown>)['content-length']).toBeUndefined()
    await db.close()
    rmSync(dir, { recursive: true, force: true })
  })
})

describe('configurations REST errors', () => {
  it('refuses bad ids, content and priorities with the reason', async () => {
    expect(err(await t.rest('PUT', path('Upper'), { body: good }))).toMatchObject({ status: 400, code: 'ArgumentInvalid', message: expect.stringContaining('lower-case') })
    expect(err(await t.rest('PUT', path('c1'), { body: { ...good, content: {} } }))).toMatchObject({ status: 400, message: expect.stringContaining('exactly one of deviceContent, moduleContent or modulesContent') })
    expect(err(await t.rest('PUT', path('c1'), { body: { ...good, content: { deviceContent: { 'properties.desired.$x': 1 } } } }))).toMatchObject({ status: 400, message: expect.stringContaining("desired.$x: property names must not contain control characters, '.', '$' or spaces") })
    expect(err(await t.rest('PUT', path('c1'), { body: { ...good, content: { modulesContent: { $edgeAgent: { desired: {} } } } } }))).toMatchObject({ status: 400, message: expect.stringContaining('must be {"properties.desired": {...}}') })
    expect(err(await t.rest('PUT', path('c1'), { body: { ...good, priority: -1 } }))).toMatchObject({ status: 400, message: expect.stringContaining('priority must be a non-negative integer') })
    expect(err(await t.rest('PUT', path('c1'), { body: { ...good, metrics: { queries: { bad: 'SELECT FROM' } } } }))).toMatchObject({ status: 400, message: expect.stringContaining('The query is invalid') })
    // content paths become nested objects when applied: no __proto__, no deeper than a twin may be
    expect(err(await t.rest('PUT', path('c1'), { body: { ...good, content: { deviceContent: { 'properties.desired.__proto__.content-length': 9 } } } }))).toMatchObject({ status: 400, message: expect.stringContaining('__proto__ is not supported') })
    expect(err(await t.rest('PUT', path('c1'), { body: { ...good, content: { deviceContent: { [`properties.desired${'.a'.repeat(5000)}`]: 1 } } } }))).toMatchObject({ status: 400, message: expect.stringContaining('deeper than 10 levels') })
    expect(err(await t.rest('POST', '/configurations/testQueries?api-version=2021-04-12', { body: { targetCondition: 'x'.repeat(100_000) } }))).toMatchObject({ status: 200 })
    // a whole-section path merges its object in: a __proto__ inside it is refused, not lost in the merge
    expect(err(await t.rest('PUT', path('c1'), { body: { ...good, content: { deviceContent: JSON.parse('{"properties.desired": {"__proto__": {"a b": 1}}}') } } }))).toMatchObject({ status: 400, message: expect.stringContaining('__proto__ is not supported') })
    // the values are checked as the twins will take them (a bad one would fail on every twin, every cycle)
    expect(err(await t.rest('PUT', path('c1'), { body: { ...good, content: { deviceContent: { 'properties.desired.a': { $x: 1 } } } } }))).toMatchObject({ status: 400, message: expect.stringContaining("desired.a.$x: property names must not contain") })
    expect(err(await t.rest('PUT', path('c1'), { body: { ...good, content: { modulesContent: { $edgeAgent: { 'properties.desired': { a: null } } } } } }))).toMatchObject({ status: 400, message: expect.stringContaining('null is only allowed in a patch') })
    expect(err(await t.rest('GET', path('c1')))).toMatchObject({ status: 404, code: 'ConfigurationNotFound' })
  })

  it('updates and deletes by etag; a stale one is 412', async () => {
    const created = await t.rest('PUT', path('c-etag'), { body: good })
    expect(created.status).toBe(200)
    expect(created.body).toMatchObject({ id: 'c-etag', schemaVersion: '1.0', priority: 2, systemMetrics: { queries: { targetedCount: "SELECT deviceId FROM devices WHERE tags.a='b'", appliedCount: "SELECT deviceId FROM devices WHERE configurations.[[c-etag]].status = 'Applied'" } } })
    const updated = await t.rest('PUT', path('c-etag'), { body: { ...good, priority: 3 }, headers: { 'If-Match': `"${created.body.etag}"` } })
    expect(updated.body.priority).toBe(3)
    expect(err(await t.rest('PUT', path('c-etag'), { body: good, headers: { 'If-Match': `"${created.body.etag}"` } }))).toMatchObject({ status: 412, code: 'PreconditionFailed' })
    expect(err(await t.rest('DELETE', path('c-etag'), { headers: { 'If-Match': `"${created.body.etag}"` } }))).toMatchObject({ status: 412 })
    expect((await t.rest('DELETE', path('c-etag'), { headers: { 'If-Match': `"${updated.body.etag}"` } })).status).toBe(204)
    expect(err(await t.rest('DELETE', path('c-etag')))).toMatchObject({ status: 404, code: 'ConfigurationNotFound' })
  })

  it(`holds at most ${MAX_CONFIGURATIONS}: the next is 413101`, async () => {
    for (let i = 0; i < MAX_CONFIGURATIONS; i++) expect((await t.rest('PUT', path(`c-many-${i}`), { body: good })).status).toBe(200)
    expect(err(await t.rest('PUT', path('c-one-more'), { body: good }))).toMatchObject({ status: 413, code: 'ConfigurationCountLimitExceeded' })
    expect((await t.rest('GET', '/configurations?top=3&api-version=2021-04-12')).body.map((c: { id: string }) => c.id)).toEqual(['c-many-0', 'c-many-1', 'c-many-2'])
    for (let i = 0; i < MAX_CONFIGURATIONS; i++) await t.rest('DELETE', path(`c-many-${i}`))
  })

  it('testQueries reports each query\'s error, or an empty string', async () => {
    const r = await t.rest('POST', '/configurations/testQueries?api-version=2021-04-12', {
      body: { targetCondition: "tags.env = 'x' AND", customMetricQueries: { ok: 'SELECT deviceId FROM devices', broken: 'SELECT deviceId FROM' } },
    })
    expect(r.status).toBe(200)
    expect(r.body.targetConditionError).not.toBe('')
    expect(r.body.customMetricQueryErrors.ok).toBe('')
    expect(r.body.customMetricQueryErrors.broken).not.toBe('')
    expect((await t.rest('GET', '/configurations?api-version=2021-04-12')).body).toEqual([])
  })
})
