// Issue 18: scheduled jobs over REST on a real hub: twin updates and method calls on the devices a
// query selects, with per-device records in devices.jobs; a job scheduled for later; cancel; the
// active-job limit; paging through /jobs/v2/query; and the errors Azure answers for bad requests.
import type mqttPacket from 'mqtt-packet'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestHub, type TestHub } from './helpers/test-hub.js'
import { connectDevice, until } from './helpers/device-mqtt.js'
import type { MqttTestClient } from './helpers/mqtt-test-client.js'

let t: TestHub
beforeAll(async () => { t = await startTestHub({ shards: 2 }) })
afterAll(async () => { await t.stop() })

const V = 'api-version=2021-04-12'
const put = (id: string, body: unknown) => t.rest('PUT', `/jobs/v2/${id}?${V}`, { body })
const get = (id: string) => t.rest('GET', `/jobs/v2/${id}?${V}`)
const err = (r: { status: number; headers: Record<string, unknown>; body: any }) => ({ status: r.status, code: r.headers['iothub-errorcode'], message: r.body?.Message })
const ended = (id: string, timeoutMs = 20_000) => until(() => get(id), (r) => ['completed', 'failed', 'cancelled'].includes(r.body?.status), timeoutMs)
async function deviceJobs(jobId: string): Promise<any[]> {
  const r = await t.rest('POST', `/devices/query?${V}`, { body: { query: `SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '${jobId}'` } })
  expect(r.headers['x-ms-item-type']).toBe('deviceJob')
  return (r.body as any[]).sort((a, b) => a.deviceId.localeCompare(b.deviceId))
}

/** Answers every method call; `hold` names calls never answered (so they stay in flight). */
function serve(c: MqttTestClient, seen: string[], hold = false): void {
  c.socket.on('data', () => {
    for (const p of c.packets.splice(0)) {
      if (p.cmd !== 'publish') continue
      const m = /^\$iothub\/methods\/POST\/([^/]+)\/\?\$rid=(.+)$/.exec((p as mqttPacket.IPublishPacket).topic)
      if (!m) continue
      seen.push(m[1]!)
      if (hold) continue
      const payload = JSON.parse((p as mqttPacket.IPublishPacket).payload.toString())
      c.send({ cmd: 'publish', topic: `$iothub/methods/res/201/?$rid=${m[2]}`, payload: Buffer.from(JSON.stringify({ echo: payload })), qos: 0, retain: false, dup: false } as mqttPacket.IPublishPacket)
    }
  })
}

async function tagged(prefix: string, count: number, tags: Record<string, unknown>): Promise<string[]> {
  const ids = Array.from({ length: count }, (_, i) => `${prefix}-${String(i).padStart(3, '0')}`)
  for (const id of ids) {
    await t.createDevice(id)
    expect((await t.rest('PATCH', `/twins/${id}?${V}`, { body: { tags } })).status).toBe(200)
  }
  return ids
}

describe('scheduleUpdateTwin', () => {
  it('patches every device the condition selects, once, and records each in devices.jobs', async () => {
    const ids = await tagged('jt', 30, { site: 'north' })
    await tagged('jt-other', 3, { site: 'south' })
    const created = await put('twin-1', { jobId: 'twin-1', type: 'scheduleUpdateTwin', queryCondition: "tags.site = 'north'", updateTwin: { etag: '*', properties: { desired: { mode: 'eco' } }, tags: { done: true } }, startTime: null })
    expect(created.status).toBe(200)
    expect(created.body).toMatchObject({ jobId: 'twin-1', type: 'scheduleUpdateTwin', status: 'queued', queryCondition: "tags.site = 'north'", maxExecutionTimeInSeconds: 3600 })
    const done = await ended('twin-1')
    expect(done.body).toMatchObject({ status: 'completed', deviceJobStatistics: { deviceCount: 30, succeededCount: 30, failedCount: 0, pendingCount: 0, runningCount: 0 } })
    expect(typeof done.body.endTime).toBe('string')
    const twins = await Promise.all([...ids, 'jt-other-000'].map(async (id) => (await t.rest('GET', `/twins/${id}?${V}`)).body))
    expect(twins.slice(0, 30).map((tw) => [tw.properties.desired.mode, tw.properties.desired.$version, tw.tags.done])).toEqual(ids.map(() => ['eco', 2, true]))
    expect(twins[30].properties.desired.mode).toBeUndefined()
    const records = await deviceJobs('twin-1')
    expect(records.map((r) => [r.deviceId, r.status, r.jobType, r.outcome])).toEqual(ids.map((id) => [id, 'completed', 'scheduleUpdateTwin', null]))
    expect(Object.keys(records[0]).sort()).toEqual(['createdDateTimeUtc', 'deviceId', 'endTimeUtc', 'jobId', 'jobType', 'lastUpdatedDateTimeUtc', 'outcome', 'startTimeUtc', 'status'])
  })
})

describe('scheduleDeviceMethod', () => {
  it('calls each selected device and records its answer; an offline one fails with DeviceNotOnline', async () => {
    const seen: string[][] = [[], [], []]
    const clients: MqttTestClient[] = []
    for (let i = 0; i < 3; i++) {
      const c = await connectDevice(t, `jm-${i}`)
      await c.subscribe('$iothub/methods/POST/#', 0)
      serve(c, seen[i]!)
      clients.push(c)
    }
    await t.createDevice('jm-offline')
    const r = await put('method-1', { jobId: 'method-1', type: 'scheduleDeviceMethod', queryCondition: "deviceId IN ['jm-0', 'jm-1', 'jm-2', 'jm-offline']", cloudToDeviceMethod: { methodName: 'reboot', payload: { n: 1 }, responseTimeoutInSeconds: 10 } })
    expect(r.status).toBe(200)
    const done = await ended('method-1')
    expect(done.body).toMatchObject({ status: 'completed', deviceJobStatistics: { deviceCount: 4, succeededCount: 3, failedCount: 1 } })
    expect(seen).toEqual([['reboot'], ['reboot'], ['reboot']])
    const records = await deviceJobs('method-1')
    expect(records.slice(0, 3).map((x) => [x.status, x.outcome])).toEqual([0, 1, 2].map(() => ['completed', { deviceMethodResponse: { status: 201, payload: { echo: { n: 1 } } } }]))
    expect(records[3]).toMatchObject({ deviceId: 'jm-offline', status: 'failed', outcome: null, error: { code: 'DeviceNotOnline' } })
    for (const c of clients) await c.disconnect()
  })
})

describe('scheduling and cancelling', () => {
  it('a job scheduled for later waits for its startTime', async () => {
    await t.createDevice('js-1')
    const startTime = new Date(Date.now() + 1500).toISOString()
    const r = await put('later-1', { type: 'scheduleUpdateTwin', queryCondition: "deviceId = 'js-1'", updateTwin: { etag: '*', tags: { later: 1 } }, startTime })
    expect(r.body).toMatchObject({ status: 'scheduled', startTime })
    const done = await ended('later-1')
    expect(done.body.status).toBe('completed')
    const [record] = await deviceJobs('later-1')
    expect(Date.parse(record.startTimeUtc)).toBeGreaterThanOrEqual(Date.parse(startTime))
  })

  it('cancel stops a running job: what it had not reached is canceled', async () => {
    // one device operation per 10 s after a burst of 6 (a minute's worth): still running when the cancel arrives
    expect((await t.rest('PUT', '/hyperhub/tier', { body: { tier: 'unlimited', overrides: { jobDeviceOps: 0.1 } } })).status).toBe(200)
    try {
      const ids = await tagged('jc', 20, { cancel: 'me' })
      expect((await put('cancel-1', { type: 'scheduleUpdateTwin', queryCondition: "tags.cancel = 'me'", updateTwin: { etag: '*', tags: { touched: true } } })).status).toBe(200)
      await until(() => get('cancel-1'), (g) => g.body.deviceJobStatistics.succeededCount >= 1)
      const cancelled = await t.rest('POST', `/jobs/v2/cancel-1/cancel?${V}`)
      expect(cancelled.status).toBe(200)
      expect(cancelled.body.status).toBe('cancelled')
      const after = await ended('cancel-1')
      const s = after.body.deviceJobStatistics
      const records = await deviceJobs('cancel-1')
      const canceled = records.filter((x) => x.status === 'canceled').length
      expect(canceled).toBeGreaterThan(0)
      expect([s.deviceCount, s.pendingCount, s.succeededCount + canceled + s.runningCount]).toEqual([20, 0, 20])
      // the canceled devices' twins were not touched
      const untouched = records.filter((x) => x.status === 'canceled').map((x) => x.deviceId)
      for (const id of untouched) expect((await t.rest('GET', `/twins/${id}?${V}`)).body.tags.touched).toBeUndefined()
      expect(ids).toHaveLength(20)
    } finally {
      await t.rest('PUT', '/hyperhub/tier', { body: { tier: 'unlimited' } })
    }
  })

  it('a device deleted after the job picked it fails with DeviceNotFound, and gets no twin back', async () => {
    // a burst of 30 device operations, then one per 2 s: the last device waits while it is deleted
    expect((await t.rest('PUT', '/hyperhub/tier', { body: { tier: 'unlimited', overrides: { jobDeviceOps: 0.5 } } })).status).toBe(200)
    try {
      const ids = await tagged('jd', 32, { gone: 'soon' })
      expect((await put('deleted-1', { type: 'scheduleUpdateTwin', queryCondition: "tags.gone = 'soon'", updateTwin: { etag: '*', tags: { seen: 1 } } })).status).toBe(200)
      await until(() => get('deleted-1'), (g) => g.body.deviceJobStatistics.succeededCount >= 30)
      expect((await t.rest('DELETE', `/devices/${ids[31]}?${V}`, { headers: { 'If-Match': '*' } })).status).toBe(204)
      await t.rest('PUT', '/hyperhub/tier', { body: { tier: 'unlimited' } })
      expect((await ended('deleted-1')).body.deviceJobStatistics).toMatchObject({ deviceCount: 32, succeededCount: 31, failedCount: 1 })
      const records = await deviceJobs('deleted-1')
      expect(records[31]).toMatchObject({ deviceId: ids[31], status: 'failed', error: { code: 'DeviceNotFound', description: `Device ${ids[31]} not registered` } })
      expect((await t.rest('GET', `/twins/${ids[31]}?${V}`)).status).toBe(404)
    } finally {
      await t.rest('PUT', '/hyperhub/tier', { body: { tier: 'unlimited' } })
    }
  })

  it('a job past its maxExecutionTimeInSeconds fails; the devices it had not reached fail with GenericTimeout', async () => {
    // a burst of 6 device operations, then one per 10 s: 1 s is not enough for 10 devices
    expect((await t.rest('PUT', '/hyperhub/tier', { body: { tier: 'unlimited', overrides: { jobDeviceOps: 0.1 } } })).status).toBe(200)
    try {
      await tagged('jx', 10, { slow: 'yes' })
      expect((await put('expire-1', { type: 'scheduleUpdateTwin', queryCondition: "tags.slow = 'yes'", updateTwin: { etag: '*', tags: { hit: 1 } }, maxExecutionTimeInSeconds: 1 })).status).toBe(200)
      const done = await ended('expire-1')
      expect(done.body).toMatchObject({ status: 'failed', failureReason: 'the job ran past its maxExecutionTimeInSeconds (1 s); devices not reached were marked failed',
        deviceJobStatistics: { deviceCount: 10, succeededCount: 6, failedCount: 4, pendingCount: 0, runningCount: 0 } })
      const failed = (await deviceJobs('expire-1')).filter((r) => r.status === 'failed')
      expect(failed.map((r) => r.error.code)).toEqual(['GenericTimeout', 'GenericTimeout', 'GenericTimeout', 'GenericTimeout'])
    } finally {
      await t.rest('PUT', '/hyperhub/tier', { body: { tier: 'unlimited' } })
    }
  })

  it('runs at most one active job on S1 (429004), and the slot frees when it ends', async () => {
    expect((await t.rest('PUT', '/hyperhub/tier', { body: { tier: 'S1' } })).status).toBe(200)
    try {
      const later = new Date(Date.now() + 3_600_000).toISOString()
      expect((await put('slot-1', { type: 'scheduleUpdateTwin', queryCondition: '*', updateTwin: { etag: '*', tags: { x: 1 } }, startTime: later })).status).toBe(200)
      expect(err(await put('slot-2', { type: 'scheduleUpdateTwin', queryCondition: '*', updateTwin: { etag: '*', tags: { x: 1 } } })))
        .toEqual({ status: 429, code: 'ThrottlingMaxActiveJobCountExceeded', message: expect.stringContaining('at most 1 active jobs on tier S1') })
      expect((await t.rest('POST', `/jobs/v2/slot-1/cancel?${V}`)).body).toMatchObject({ status: 'cancelled', deviceJobStatistics: { deviceCount: 0 } })
      expect((await put('slot-2', { type: 'scheduleUpdateTwin', queryCondition: "deviceId = 'none'", updateTwin: { etag: '*', tags: { x: 1 } } })).status).toBe(200)
      expect((await ended('slot-2')).body.status).toBe('completed')
    } finally {
      await t.rest('PUT', '/hyperhub/tier', { body: { tier: 'unlimited' } })
    }
  })
})

describe('review findings', () => {
  it('a cancelled job keeps its active slot until its calls in flight return', async () => {
    const held: string[] = []
    const c = await connectDevice(t, 'slot-held')
    await c.subscribe('$iothub/methods/POST/#', 0)
    // the device holds the call, then answers when told
    let answer: (() => void) | undefined
    c.socket.on('data', () => {
      for (const p of c.packets.splice(0)) {
        const m = p.cmd === 'publish' ? /^\$iothub\/methods\/POST\/([^/]+)\/\?\$rid=(.+)$/.exec((p as mqttPacket.IPublishPacket).topic) : null
        if (!m) continue
        held.push(m[1]!)
        answer = () => c.send({ cmd: 'publish', topic: `$iothub/methods/res/200/?$rid=${m[2]}`, payload: Buffer.from('{}'), qos: 0, retain: false, dup: false } as mqttPacket.IPublishPacket)
      }
    })
    expect((await t.rest('PUT', '/hyperhub/tier', { body: { tier: 'S1' } })).status).toBe(200)
    try {
      expect((await put('held-1', { type: 'scheduleDeviceMethod', queryCondition: "deviceId = 'slot-held'", cloudToDeviceMethod: { methodName: 'wait', responseTimeoutInSeconds: 60 } })).status).toBe(200)
      await until(() => held.length, (n) => n === 1)
      expect((await t.rest('POST', `/jobs/v2/held-1/cancel?${V}`)).body.status).toBe('cancelled')
      const next = { type: 'scheduleUpdateTwin', queryCondition: "deviceId = 'nobody'", updateTwin: { etag: '*', tags: { a: 1 } } }
      expect(err(await put('held-2', next))).toMatchObject({ status: 429, code: 'ThrottlingMaxActiveJobCountExceeded' })
      answer!()
      const done = await until(() => put('held-3', next), (r) => r.status !== 429)
      expect(done.status).toBe(200)
      expect((await deviceJobs('held-1'))[0]).toMatchObject({ status: 'completed', outcome: { deviceMethodResponse: { status: 200 } } })
    } finally {
      await t.rest('PUT', '/hyperhub/tier', { body: { tier: 'unlimited' } })
      await c.disconnect()
    }
  })

  it('refuses a twin patch that no twin would take, before the job exists', async () => {
    const job = (updateTwin: unknown) => put('bad-patch', { type: 'scheduleUpdateTwin', queryCondition: '*', updateTwin })
    expect(err(await job({ etag: '*', properties: 5 }))).toMatchObject({ status: 400, message: expect.stringContaining('updateTwin.properties must be an object') })
    expect(err(await job({ etag: '*', tags: { 'a b': 1 } }))).toMatchObject({ status: 400, message: expect.stringContaining("tags.a b: property names must not contain") })
    expect(err(await job({ etag: '*', properties: { desired: Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`k${i}`, 'x'.repeat(4000)])) } }))).toMatchObject({ status: 400, message: expect.stringContaining('exceeds the 32768-byte limit') })
    expect((await get('bad-patch')).status).toBe(404)
  })
})

describe('listing jobs', () => {
  it('filters by type and status and pages with x-ms-continuation', async () => {
    for (const id of ['list-a', 'list-b', 'list-c']) {
      expect((await put(id, { type: 'scheduleUpdateTwin', queryCondition: "deviceId = 'nobody'", updateTwin: { etag: '*', tags: { y: 1 } } })).status).toBe(200)
      await ended(id)
    }
    const seen: string[] = []
    let continuation: string | undefined
    for (let i = 0; i < 20; i++) {
      const r = await t.rest('GET', `/jobs/v2/query?${V}&jobType=ScheduleUpdateTwin&jobStatus=completed`, { headers: { 'x-ms-max-item-count': '2', ...(continuation ? { 'x-ms-continuation': continuation } : {}) } })
      expect(r.status).toBe(200)
      expect(r.headers['x-ms-item-type']).toBe('jobResponse')
      expect(r.body.length).toBeLessThanOrEqual(2)
      seen.push(...r.body.map((j: any) => j.jobId))
      for (const j of r.body) expect([j.type, j.status]).toEqual(['scheduleUpdateTwin', 'completed'])
      continuation = r.headers['x-ms-continuation'] as string | undefined
      if (!continuation) break
    }
    expect(seen.filter((id) => id.startsWith('list-'))).toEqual(['list-a', 'list-b', 'list-c'])
    expect(new Set(seen).size).toBe(seen.length)
    // created together (several in one millisecond), ids that differ in case and punctuation: one a page, none skipped
    const mixed = ['Ord-b', 'ord-a', 'ord_c', 'ORD-d', 'ord.e']
    await Promise.all(mixed.map((id) => put(id, { type: 'scheduleUpdateTwin', queryCondition: "deviceId = 'nobody'", updateTwin: { etag: '*', tags: { y: 1 } } })))
    for (const id of mixed) await ended(id)
    const all: string[] = []
    let token: string | undefined
    for (let i = 0; i < 100; i++) {
      const r = await t.rest('GET', `/jobs/v2/query?${V}`, { headers: { 'x-ms-max-item-count': '1', ...(token ? { 'x-ms-continuation': token } : {}) } })
      all.push(...r.body.map((j: any) => j.jobId))
      token = r.headers['x-ms-continuation'] as string | undefined
      if (!token) break
    }
    expect(all.filter((id) => mixed.includes(id)).sort()).toEqual([...mixed].sort())
    const methods = await t.rest('GET', `/jobs/v2/query?${V}&jobType=scheduleDeviceMethod`)
    expect(methods.body.every((j: any) => j.type === 'scheduleDeviceMethod')).toBe(true)
    expect(err(await t.rest('GET', `/jobs/v2/query?${V}&jobStatus=sleeping`))).toMatchObject({ status: 400, code: 'ArgumentInvalid', message: expect.stringContaining('jobStatus must be one of') })
  })
})

describe('large jobs in the history', () => {
  it('answers an ended job with its payload, and stops a listing page at 1 MB', async () => {
    const payload = { blob: 'p'.repeat(120_000) }
    const ids = Array.from({ length: 10 }, (_, i) => `big-${i}`)
    for (const id of ids) {
      expect((await put(id, { type: 'scheduleDeviceMethod', queryCondition: "deviceId = 'nobody'", cloudToDeviceMethod: { methodName: 'm', payload } })).status).toBe(200)
      await ended(id)
    }
    // ended jobs are held without their payload; the answer reads it back whole
    expect((await get('big-3')).body.cloudToDeviceMethod.payload).toEqual(payload)
    const first = await t.rest('GET', `/jobs/v2/query?${V}&jobType=scheduleDeviceMethod`, { headers: { 'x-ms-max-item-count': '100' } })
    expect(first.text.length).toBeLessThanOrEqual(1024 * 1024 + 130_000)
    expect(first.headers['x-ms-continuation']).toEqual(expect.any(String))
    const big = first.body.filter((j: any) => j.jobId.startsWith('big-'))
    expect(big.every((j: any) => j.cloudToDeviceMethod.payload.blob.length === 120_000)).toBe(true)
  })
})

describe('bad job requests', () => {
  const twinJob = { type: 'scheduleUpdateTwin', queryCondition: '*', updateTwin: { etag: '*', tags: { z: 1 } } }
  it('answers Azure\'s errors', async () => {
    expect(err(await put('bad-q', { ...twinJob, queryCondition: "tags.a = = 'x'" }))).toMatchObject({ status: 400, code: 'ArgumentInvalid', message: expect.stringContaining('queryCondition does not parse') })
    expect(err(await put('bad-q2', { ...twinJob, queryCondition: '' }))).toMatchObject({ status: 400, code: 'ArgumentInvalid', message: expect.stringContaining('queryCondition is required') })
    expect(err(await put('bad-t', { ...twinJob, type: 'reboot' }))).toMatchObject({ status: 400, message: expect.stringContaining('type must be scheduleDeviceMethod or scheduleUpdateTwin') })
    expect(err(await put('bad-e', { ...twinJob, updateTwin: { tags: { z: 1 } } }))).toMatchObject({ status: 400, message: expect.stringContaining('updateTwin.etag is required') })
    expect(err(await put('bad-r', { ...twinJob, updateTwin: { etag: '*', properties: { reported: { a: 1 } } } }))).toMatchObject({ status: 400, message: expect.stringContaining('cannot change reported properties') })
    expect(err(await put('bad-m', { type: 'scheduleDeviceMethod', queryCondition: '*', cloudToDeviceMethod: { methodName: 'a b' } }))).toMatchObject({ status: 400, message: expect.stringContaining('methodName is required') })
    expect(err(await put('bad-s', { ...twinJob, startTime: 'tomorrow' }))).toMatchObject({ status: 400, message: expect.stringContaining('startTime must be an ISO 8601 time') })
    expect(err(await put('bad-s1', { ...twinJob, startTime: '1' }))).toMatchObject({ status: 400, message: expect.stringContaining('startTime must be an ISO 8601 time') })
    expect(err(await put('bad-x', { ...twinJob, maxExecutionTimeInSeconds: 0 }))).toMatchObject({ status: 400, message: expect.stringContaining('maxExecutionTimeInSeconds must be an integer') })
    expect(err(await put('bad-id', { ...twinJob, jobId: 'other' }))).toMatchObject({ status: 400, message: expect.stringContaining("is not the path's bad-id") })
    expect(err(await get('no-such-job'))).toMatchObject({ status: 404, code: 'JobNotFound' })
    expect(err(await t.rest('POST', `/jobs/v2/no-such-job/cancel?${V}`))).toMatchObject({ status: 404, code: 'JobNotFound' })
    // nothing above was stored
    for (const id of ['bad-q', 'bad-q2', 'bad-t', 'bad-e', 'bad-r', 'bad-m', 'bad-s', 'bad-s1', 'bad-x', 'bad-id']) expect((await get(id)).status).toBe(404)
    expect((await put('dup', { ...twinJob, queryCondition: "deviceId = 'nobody'" })).status).toBe(200)
    expect(err(await put('dup', { ...twinJob, queryCondition: "deviceId = 'nobody'" }))).toMatchObject({ status: 409, code: 'JobAlreadyExists' })
  })
})
