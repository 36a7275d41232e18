// Issue 18: the job history has bounds. Ended jobs past the newest 1,000 (checked as jobs end) and
// ended jobs older than 30 days leave, with their device records; active jobs stay whatever their age.
import { afterAll, describe, expect, it } from 'vitest'
import { JobStore, JOB_HISTORY_MS, MAX_ENDED_JOBS, deviceJobKey, type DeviceJobRecord } from '../src/jobs/job-store.js'
import { jobFromRequest, type JobRecord } from '../src/jobs/job-request.js'
import { tempStore } from './helpers/temp-store.js'

const temp = tempStore()
afterAll(() => temp.close())
const s = temp.store

const job = (id: string, at: Date): JobRecord => jobFromRequest(id, { type: 'scheduleUpdateTwin', queryCondition: '*', updateTwin: { etag: '*', tags: { a: 1 } } }, at)
const record = (j: JobRecord, deviceId: string): DeviceJobRecord => ({ deviceId, jobId: j.jobId, jobType: j.type, status: 'completed', createdDateTimeUtc: j.createdTime, lastUpdatedDateTimeUtc: j.createdTime, outcome: null })

describe('job history', () => {
  it('keeps the newest 1,000 ended jobs as jobs end, removing the others with their device records', async () => {
    const store = new JobStore(s.root, s.jobs, s.jobDevices, s.jobPages)
    const total = MAX_ENDED_JOBS + 60
    for (let i = 0; i < total; i++) {
      const j = job(`h-${String(i).padStart(5, '0')}`, new Date(Date.now() - (total - i) * 1000))
      await store.create(j, 10, 'S3')
      await store.saveDevices(j, [record(j, 'd1'), record(j, 'd2')])
      await store.finish(j, { ...j, status: 'completed', endTime: new Date(Date.now() - (total - i) * 1000).toISOString() })
    }
    const kept = [...store.all()].map((j) => j.jobId).sort()
    expect(kept.length).toBeLessThanOrEqual(MAX_ENDED_JOBS + 50)
    expect(kept.at(-1)).toBe(`h-${String(total - 1).padStart(5, '0')}`)
    expect(kept).not.toContain('h-00000')
    temp.committed(() => {
      expect(s.jobs.get('h-00000')).toBeUndefined()
      expect(s.jobDevices.get(deviceJobKey('h-00000', 'd1'))).toBeUndefined()
      expect(s.jobDevices.get(deviceJobKey(kept.at(-1)!, 'd2'))).toMatchObject({ status: 'completed' })
    })
  })

  it('removes ended jobs older than 30 days, not active ones', async () => {
    // a store of its own: the one above is past the count, which would remove the oldest anyway
    const own = tempStore()
    const o = own.store
    const store = new JobStore(o.root, o.jobs, o.jobDevices, o.jobPages)
    const old = new Date(Date.now() - JOB_HISTORY_MS - 60_000)
    const ended = job('old-ended', old)
    const active = job('old-active', old)
    for (const j of [ended, active]) await store.create(j, 100, 'S3')
    await store.finish(ended, { ...ended, status: 'failed', endTime: old.toISOString() })
    await store.prune()
    expect([store.get('old-ended'), store.get('old-active')?.status]).toEqual([undefined, 'queued'])
    await own.close()
  })
})
