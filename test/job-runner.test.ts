// Issue 18: the job runner with its real store and stand-ins for the query worker and the shards: a
// full query-worker queue (429) delays a job's next page instead of failing the job.
import { afterAll, describe, expect, it } from 'vitest'
import { JobRunner } from '../src/jobs/job-runner.js'
import { JobStore } from '../src/jobs/job-store.js'
import { jobFromRequest } from '../src/jobs/job-request.js'
import { HubError } from '../src/rest/hub-error.js'
import { createLogger } from '../src/log.js'
import { until } from './helpers/device-mqtt.js'
import { tempStore } from './helpers/temp-store.js'

const temp = tempStore()
afterAll(() => temp.close())

describe('job runner', () => {
  it('waits while the query worker\'s queue is full, then runs the job', async () => {
    const s = temp.store
    const store = new JobStore(s.root, s.jobs, s.jobDevices, s.jobPages)
    let scans = 0
    const patched: string[] = []
    const runner = new JobRunner({
      store,
      queries: { targets: async () => { if (++scans === 1) throw new HubError(429001, 'more than 100 queries are waiting; retry later'); return { ids: ['d1', 'd2'] } } },
      registry: { get: (id: string) => ({ deviceId: id }) as never },
      edge: { methods: {} as never },
      shards: { request: (async (_kind: string, id: string) => { patched.push(id) }) as never },
      throttles: { admit: () => ({ kind: 'now' }), bill: () => {} },
      log: createLogger('silent'),
    })
    const job = jobFromRequest('busy-worker', { type: 'scheduleUpdateTwin', queryCondition: '*', updateTwin: { etag: '*', tags: { a: 1 } } })
    await store.create(job, 10, 'S3')
    runner.schedule(job)
    const done = await until(() => store.get('busy-worker')!.status, (st) => st === 'completed' || st === 'failed', 10_000)
    expect([done, scans, patched, job.deviceJobStatistics.succeededCount]).toEqual(['completed', 2, ['d1', 'd2'], 2])
    await runner.close()
  })
})
