// Issue 18: a scheduled job survives the hub dying. A hub killed with SIGKILL in the middle of a
// twin-update job resumes it after restart: every targeted device is patched exactly once (its
// desired $version went up by one), none is skipped, and the job's counts match its records. A twin
// takes a job's patch once, so a device whose update was in flight at the kill is not patched twice.
import { rmSync } from 'node:fs'
import { afterAll, describe, expect, it } from 'vitest'
import { spawnHub, type HubProcess } from './helpers/hub-process.js'
import { seedPki, tempDir } from './helpers/test-hub.js'
import { until } from './helpers/device-mqtt.js'
import { TwinStore } from '../shards/twin-store.js'
import { tempStore } from './helpers/temp-store.js'

const V = 'api-version=2021-04-12'
const dirs: string[] = []
const hubs: HubProcess[] = []
afterAll(() => {
  for (const h of hubs) if (h.child.exitCode === null) h.child.kill('SIGKILL')
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

async function allPages(hub: HubProcess, query: string): Promise<any[]> {
  // the child's REST helper sends no paging headers: 100 per page is enough for 60 records
  const r = await hub.rest('POST', `/devices/query?${V}`, { query })
  expect(r.status).toBe(200)
  return r.body as any[]
}

describe('a job across a SIGKILL', () => {
  it('resumes where it stopped: every device patched once, none skipped', async () => {
    const dir = tempDir('hyperhub-job-kill-')
    dirs.push(dir)
    seedPki(dir)
    const first = await spawnHub(dir)
    hubs.push(first)
    const ids = Array.from({ length: 60 }, (_, i) => `kill-${String(i).padStart(2, '0')}`)
    const bulk = await first.rest('POST', `/devices?${V}`, ids.map((id) => ({ id, importMode: 'create', status: 'enabled', tags: { fleet: 'k' } })))
    expect(bulk.body).toMatchObject({ isSuccessful: true })
    // a burst of 6 device operations, then one per 10 s: the kill lands mid-job
    expect((await first.rest('PUT', '/hyperhub/tier', { tier: 'unlimited', overrides: { jobDeviceOps: 0.1 } })).status).toBe(200)
    const created = await first.rest('PUT', `/jobs/v2/kill-job?${V}`, { type: 'scheduleUpdateTwin', queryCondition: "tags.fleet = 'k'", updateTwin: { etag: '*', properties: { desired: { firmware: '2.0' } } } })
    expect(created.status).toBe(200)
    const mid = await until(() => first.rest('GET', `/jobs/v2/kill-job?${V}`), (r) => r.body.deviceJobStatistics.succeededCount >= 6, 15_000)
    expect(mid.body.status).toBe('running')
    first.child.kill('SIGKILL')
    await first.exited

    const second = await spawnHub(dir)
    hubs.push(second)
    const done = await until(() => second.rest('GET', `/jobs/v2/kill-job?${V}`), (r) => r.body.status !== 'running', 20_000)
    expect(done.body).toMatchObject({ status: 'completed', deviceJobStatistics: { deviceCount: 60, succeededCount: 60, failedCount: 0, pendingCount: 0, runningCount: 0 } })
    const twins = await allPages(second, "SELECT deviceId, properties.desired.firmware, properties.desired.$version FROM devices WHERE tags.fleet = 'k'")
    expect(twins.map((t) => [t.deviceId, t.firmware, t.$version]).sort()).toEqual(ids.map((id) => [id, '2.0', 2]))
    const records = await allPages(second, "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'kill-job'")
    expect(records.map((r) => [r.deviceId, r.status]).sort()).toEqual(ids.map((id) => [id, 'completed']))
    second.child.kill('SIGTERM')
    await second.exited
  }, 60_000)
})

describe('a twin and a job', () => {
  const temp = tempStore()
  afterAll(() => temp.close())
  it('takes a job\'s patch once: the same job again changes nothing, another job does', async () => {
    const twins = new TwinStore(temp.store.twins)
    await twins.ensure('job-twin', 'gen')
    const patch = { properties: { desired: { a: 1 } } }
    const once = twins.updateFromService('job-twin', 'patch', patch, undefined, 'job-a')
    await once.written
    const again = twins.updateFromService('job-twin', 'patch', { properties: { desired: { a: 2 } } }, undefined, 'job-a')
    await again.written
    expect([again.doc.version, again.doc.desired.a]).toEqual([once.doc.version, 1])
    const other = twins.updateFromService('job-twin', 'patch', { properties: { desired: { a: 3 } } }, undefined, 'job-b')
    await other.written
    expect([other.doc.version, other.doc.desired.a]).toEqual([once.doc.version + 1, 3])
  })
})
