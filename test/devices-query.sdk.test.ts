// The IoT Hub query language over `POST /devices/query` with the official azure-iothub Registry on
// the standard ports: paging through 1,000 twins with continuation tokens, COUNT() and GROUP BY,
// and the errors a bad query or a foreign continuation token gets.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Registry } from 'azure-iothub'
import { serviceConnectionString } from '../src/auth/policies.js'
import { startTestHub, type TestHub } from './helpers/test-hub.js'

let t: TestHub
let registry: Registry
const DEVICES = 1000

async function inParallel<T>(items: T[], width: number, f: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) await f(items[next++]!)
  }))
}

beforeAll(async () => {
  if (!process.env.NODE_EXTRA_CA_CERTS) throw new Error('run through `npm test`: the SDKs need NODE_EXTRA_CA_CERTS set at process start')
  t = await startTestHub({ mqttPort: 8883, httpsPort: 443, mqttTcpPort: null, shards: 2 })
  registry = Registry.fromConnectionString(serviceConnectionString('localhost', t.hub.policies.find((p) => p.keyName === 'iothubowner')!))
  const ids = Array.from({ length: DEVICES }, (_, i) => `q-${String(i).padStart(4, '0')}`)
  await inParallel(ids, 32, async (id) => {
    await t.createDevice(id)
    const i = Number(id.slice(2))
    const r = await t.rest('PATCH', `/twins/${id}?api-version=2021-04-12`, { body: { tags: { x: 'fleet', n: i % 3 }, properties: { desired: { rate: i } } } })
    if (r.status !== 200) throw new Error(`tag ${id}: ${r.status} ${r.text}`)
  })
  await t.createDevice('q-untagged')
}, 120_000)
afterAll(async () => { await t?.stop() })

describe('Registry.createQuery', () => {
  it('pages through 1,000 twins with nextAsTwin(continuationToken)', async () => {
    const query = registry.createQuery("SELECT * FROM devices WHERE tags.x = 'fleet'", 100)
    const seen: string[] = []
    let pages = 0
    while (query.hasMoreResults) {
      const { result } = await query.nextAsTwin(query.continuationToken)
      pages++
      expect(result.length).toBeLessThanOrEqual(100)
      for (const twin of result) {
        expect(twin.tags).toMatchObject({ x: 'fleet' })
        seen.push(twin.deviceId)
      }
      if (pages > 20) throw new Error('too many pages')
    }
    expect(pages).toBe(10)
    expect(new Set(seen).size).toBe(DEVICES)
    expect(seen).not.toContain('q-untagged')
  })

  it('returns Azure-shaped twins', async () => {
    const query = registry.createQuery("SELECT * FROM devices WHERE deviceId = 'q-0007'")
    const { result } = await query.nextAsTwin()
    expect(result).toHaveLength(1)
    const twin = result[0]! as unknown as Record<string, any>
    expect(twin).toMatchObject({ deviceId: 'q-0007', status: 'enabled', version: 2, tags: { x: 'fleet', n: 1 }, connectionState: 'Disconnected' })
    expect(twin.etag).toBeTruthy()
    expect(twin.properties.desired).toMatchObject({ rate: 7, $version: 2 })
    expect(twin.properties.desired.$metadata.rate.$lastUpdatedVersion).toBe(2)
  })

  it('answers COUNT() and GROUP BY', async () => {
    const count = await registry.createQuery("SELECT COUNT() AS total FROM devices WHERE tags.x = 'fleet'").next()
    expect(count.result).toEqual([{ total: DEVICES }])
    const grouped = (await registry.createQuery("SELECT tags.n AS n, COUNT() AS c FROM devices WHERE tags.x = 'fleet' GROUP BY tags.n").next()).result as { n: number; c: number }[]
    expect([...grouped].sort((a, b) => a.n - b.n)).toEqual([{ n: 0, c: 334 }, { n: 1, c: 333 }, { n: 2, c: 333 }])
    const all = await registry.createQuery('SELECT COUNT() AS total FROM devices').next()
    expect(all.result).toEqual([{ total: DEVICES + 1 }])
  })

  it('refuses a bad query with an ArgumentError', async () => {
    await expect(registry.createQuery('SELECT * FROM devices WHERE').next()).rejects.toMatchObject({ name: 'ArgumentError' })
  })
})

describe('POST /devices/query', () => {
  const query = (q: string, headers: Record<string, string> = {}) =>
    t.rest('POST', '/devices/query?api-version=2021-04-12', { body: { query: q }, headers })

  it('sends x-ms-continuation only while more pages exist', async () => {
    const first = await query("SELECT deviceId FROM devices WHERE tags.n = 2", { 'x-ms-max-item-count': '300' })
    expect(first.status).toBe(200)
    expect(first.headers['x-ms-item-type']).toBe('raw')
    expect(first.body).toHaveLength(300)
    const token = first.headers['x-ms-continuation'] as string
    expect(token).toBeTruthy()
    const last = await query("SELECT deviceId FROM devices WHERE tags.n = 2", { 'x-ms-max-item-count': '300', 'x-ms-continuation': token })
    expect(last.body).toHaveLength(33)
    expect(last.headers['x-ms-continuation']).toBeUndefined()
  })

  it('refuses bad input with Azure-style errors', async () => {
    const bad = await query('SELECT * FROM devices WHERE tags.x =')
    expect(bad.status).toBe(400)
    expect(bad.body.Message).toMatch(/^ErrorCode:ArgumentInvalid;The query is invalid/)
    expect(bad.body.Message).toMatch(/line 1, column/)
    expect((await query('SELECT * FROM devices', { 'x-ms-continuation': 'bogus' })).status).toBe(400)
    expect((await query('SELECT * FROM devices', { 'x-ms-max-item-count': '0' })).status).toBe(400)
    expect((await t.rest('POST', '/devices/query', { body: { q: 1 } })).status).toBe(400)
    expect((await t.rest('POST', '/devices/query', { body: { query: 'SELECT * FROM devices' }, token: t.serviceToken('registryRead') })).status).toBe(401)
  })
})
