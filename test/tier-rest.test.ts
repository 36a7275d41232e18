// Issue 14 on the real hub's REST API, with a clock the test moves: the tier is read and changed at
// run time by the owner only, a throttle's burst, queue and overflow reach REST callers as 200s then
// 429002 in Azure's body, Basic tiers answer 403010 for what they lack, a used-up daily quota answers
// 403002 until midnight UTC, and the metering endpoint counts what was billed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ManualClock } from '../src/throttle/clock.js'
import { startTestHub, type TestHub } from './helpers/test-hub.js'

const clock = new ManualClock(Date.UTC(2026, 11, 1, 23, 0))
let t: TestHub
let waits: number[] = []
beforeAll(async () => {
  t = await startTestHub({}, { throttleClock: { clock, shaping: { burstSeconds: 1, backlogSeconds: 1 }, delay: async (ms) => { waits.push(ms) } } })
  await t.createDevice('tier-dev')
})
afterAll(() => t.stop())

const code = (r: { headers: Record<string, unknown>; body: { Message?: string } }) => ({ header: r.headers['iothub-errorcode'], message: r.body?.Message?.split(';')[0] })

describe('the tier at run time', () => {
  it('starts unlimited; the owner changes it, others may not, and bad settings are refused with the reason', async () => {
    expect((await t.rest('GET', '/hyperhub/tier')).body).toMatchObject({ tier: 'unlimited', throttles: {} })
    const service = await t.rest('PUT', '/hyperhub/tier', { body: { tier: 'S1', units: 1 }, token: t.serviceToken('service') })
    expect(service.status).toBe(401)
    const bad = await t.rest('PUT', '/hyperhub/tier', { body: { tier: 'S3', units: 11 } })
    expect({ status: bad.status, message: bad.body.Message }).toEqual({ status: 400, message: 'ErrorCode:ArgumentInvalid;S3 has at most 10 units, not 11' })
    const ok = await t.rest('PUT', '/hyperhub/tier', { body: { tier: 'S2', units: 3 } })
    expect(ok.status).toBe(200)
    expect(ok.body).toMatchObject({ tier: 'S2', units: 3, throttles: { d2c: 360, twinReads: 100 }, messagesPerDay: 18_000_000 })
    expect((await t.rest('PUT', '/hyperhub/tier', { body: { tier: 'unlimited' } })).status).toBe(200)
  })

  it('a throttle serves its burst, queues the next, then answers 429002; time refills it', async () => {
    expect((await t.rest('PUT', '/hyperhub/tier', { body: { tier: 'S1', units: 1, overrides: { registry: 2 } } })).status).toBe(200)
    waits = []
    const statuses: number[] = []
    for (let i = 0; i < 5; i++) statuses.push((await t.rest('GET', '/devices/tier-dev')).status)
    expect(statuses).toEqual([200, 200, 200, 200, 429])
    expect(waits).toEqual([500, 1000]) // the queued two waited their share of the backlog
    const refused = await t.rest('GET', '/devices/tier-dev')
    expect(code(refused)).toEqual({ header: 'ThrottleBacklogLimitExceeded', message: 'ErrorCode:ThrottleBacklogLimitExceeded' })
    expect(refused.body.Message).toContain('registry')
    clock.advance(10_000)
    expect((await t.rest('GET', '/devices/tier-dev')).status).toBe(200)
    const report = (await t.rest('GET', '/hyperhub/metering')).body
    expect(report.throttles.registry).toEqual({ perSecond: 2, admitted: 3, queued: 2, refused: 2 })
  })

  it('a Basic tier answers 403010 for twins, methods and C2D, and serves the registry', async () => {
    expect((await t.rest('PUT', '/hyperhub/tier', { body: { tier: 'B1', units: 1 } })).status).toBe(200)
    clock.advance(600_000)
    for (const [method, path] of [['GET', '/twins/tier-dev'], ['PATCH', '/twins/tier-dev'], ['POST', '/twins/tier-dev/methods'], ['POST', '/devices/tier-dev/messages/devicebound'], ['GET', '/messages/serviceBound/feedback']] as const) {
      const r = await t.rest(method, path, method === 'GET' ? {} : { body: {} })
      expect({ path, status: r.status, ...code(r) }).toEqual({ path, status: 403, header: 'OperationNotAvailableInCurrentTier', message: 'ErrorCode:OperationNotAvailableInCurrentTier' })
    }
    expect((await t.rest('GET', '/devices/tier-dev')).status).toBe(200)
  })

  it('meters twin reads by size, and past the daily quota answers 403002 until midnight UTC', async () => {
    expect((await t.rest('PUT', '/hyperhub/tier', { body: { tier: 'F1', units: 1 } })).status).toBe(200)
    clock.set(Date.UTC(2026, 11, 1, 23, 59))
    const twin = await t.rest('GET', '/twins/tier-dev')
    expect(twin.status).toBe(200)
    const chunks = Math.ceil(Buffer.byteLength(twin.text) / 512)
    let report = (await t.rest('GET', '/hyperhub/metering')).body
    expect(report.quota.operations.twinReads).toEqual({ messages: chunks, operations: 1, refused: 0 })
    // the rest of the day's 8,000 messages used by telemetry
    t.hub.throttles.meter.bill('d2c', 8000 - report.quota.used)
    const over = await t.rest('GET', '/twins/tier-dev')
    expect({ status: over.status, ...code(over) }).toEqual({ status: 403, header: 'IotHubQuotaExceeded', message: 'ErrorCode:IotHubQuotaExceeded' })
    expect((await t.rest('GET', '/devices/tier-dev')).status).toBe(200) // the registry is free
    clock.set(Date.UTC(2026, 11, 2, 0, 0, 1))
    expect((await t.rest('GET', '/twins/tier-dev')).status).toBe(200)
    report = (await t.rest('GET', '/hyperhub/metering')).body
    expect(report.quota).toMatchObject({ day: '2026-12-02', quota: 8000, chunkBytes: 512, operations: { twinReads: { operations: 1, refused: 0 } } })
  })
})
