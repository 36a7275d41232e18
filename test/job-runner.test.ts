// Issue 18: the job runner with its real store and stand-ins for the query worker and the shards: a
// full query-worker queue (429) delays a job's next page instead of failing the job.
import { afterAll, describe, expect, it } from 'vitest'
import { JobRunner } from '../src/jobs/job-runner.js'
import { JobStore } from '../src/jobs/job-store.js'
import { StoreUnavailableError, type WriteHealth } from '../src/store/write-health.js'
import { jobFromRequest } from '../src/jobs/job-request.js'
import { HubError } from '../src/rest/hub-error.js'
import { createLogger } from '../src/log.js'
import { until } from './helpers/device-mqtt.js'
import { tempStore } from './helpers/temp-store.js'

const temp = tempStore()
afterAll(() => temp.close())

function runnerWith(store: JobStore, request: (...args: unknown[]) => Promise<unknown>, ids = ['d1', 'd2']) {
  return new JobRunner({
    store,
    queries: { targets: async () => ({ ids }) },
    registry: { get: (id: string) => ({ deviceId: id }) as never },
    edge: { methods: {} as never },
    shards: { request: request as never },
    throttles: { admit: () => ({ kind: 'now' }), bill: () => {} },
    log: createLogger('silent'),
  })
}
const twinJob = (id: string) => jobFromRequest(id, { type: 'scheduleUpdateTwin', queryCondition: '*', updateTwin: { etag: '*', tags: { a: 1 } } })

describe('job runner', () => {
  it('a job id used again after the old job left the history is a new job to the twins', async () => {
    const own = tempStore()
    const s = own.store
    const store = new JobStore(s.root, s.jobs, s.jobDevices, s.jobPages)
    const seen: unknown[] = []
    const runner = runnerWith(store, async (...args) => { seen.push(args[5]) }, ['d1'])
    const first = twinJob('nightly')
    await store.create(first, 10, 'S3')
    runner.schedule(first)
    await until(() => store.get('nightly')!.status, (st) => st === 'completed')
    // 31 days later the old job has left the history; the id is free
    expect(await store.prune(Date.now() + 31 * 86_400_000)).toBe(1)
    const second = twinJob('nightly')
    await store.create(second, 10, 'S3')
    runner.schedule(second)
    await until(() => store.get('nightly')!.status, (st) => st === 'completed')
    // what each twin remembers must differ, or the second patch would be skipped as already applied
    expect(seen).toHaveLength(2)
    expect(seen[0]).not.toBe(seen[1])
    await runner.close()
    await own.close()
  })

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

  it('a job resumed past its deadline settles the records a crash left running', async () => {
    const own = tempStore()
    const s = own.store
    const store = new JobStore(s.root, s.jobs, s.jobDevices, s.jobPages)
    const job = jobFromRequest('late', { type: 'scheduleDeviceMethod', queryCondition: '*', cloudToDeviceMethod: { methodName: 'm' }, maxExecutionTimeInSeconds: 1 })
    await store.create(job, 10, 'S3')
    // as a crash left it: running for an hour, one device in flight, one pending
    Object.assign(job, { status: 'running', ranFrom: new Date(Date.now() - 3_600_000).toISOString() })
    job.deviceJobStatistics = { deviceCount: 2, failedCount: 0, succeededCount: 0, runningCount: 1, pendingCount: 1 }
    const at = new Date().toISOString()
    const rec = (deviceId: string, status: 'running' | 'pending') => ({ deviceId, jobId: 'late', jobType: job.type, status, createdDateTimeUtc: at, lastUpdatedDateTimeUtc: at, outcome: null })
    await store.startPage(job, { ids: ['a', 'b'], scanDone: true }, [rec('a', 'running'), rec('b', 'pending')])
    const runner = runnerWith(store, async () => {})
    runner.schedule(job, true)
    await until(() => store.get('late')!.status, (st) => st === 'failed')
    own.committed(() => {
      expect((s.jobs.get('late') as any).deviceJobStatistics).toEqual({ deviceCount: 2, failedCount: 2, succeededCount: 0, runningCount: 0, pendingCount: 0 })
      expect(['a', 'b'].map((d) => (s.jobDevices.get(`late/${d}`) as any).status)).toEqual(['failed', 'failed'])
    })
    await runner.close()
    await own.close()
  })

  it('pauses while the store refuses writes and goes on from what it stored', async () => {
    const own = tempStore()
    const s = own.store
    let refusing = false
    let refused = 0
    const refuse = () => { refused++; throw new StoreUnavailableError('the disk is full') }
    const health = {
      check: () => { if (refusing) refuse() },
      run: async <T>(w: () => Promise<T>) => { if (refusing) refuse(); return w() },
    } as unknown as WriteHealth
    const store = new JobStore(s.root, s.jobs, s.jobDevices, s.jobPages, health)
    const patched: string[] = []
    const ids = Array.from({ length: 40 }, (_, i) => `o-${String(i).padStart(2, '0')}`)
    const runner = runnerWith(store, async (...args) => {
      patched.push(args[1] as string)
      // the store fails once a few devices are done
      if (patched.length === 5) refusing = true
    }, ids)
    const job = twinJob('outage')
    await store.create(job, 10, 'S3')
    runner.schedule(job)
    // the store works again once the job has been refused a write (it must not have ended meanwhile)
    await until(() => refused, (n) => n > 0, 10_000)
    expect(store.get('outage')!.status).toBe('running')
    refusing = false
    const done = await until(() => store.get('outage')!.status, (st) => st === 'completed' || st === 'failed', 20_000)
    expect(done).toBe('completed')
    own.committed(() => {
      const stored = s.jobs.get('outage') as any
      expect([stored.status, stored.deviceJobStatistics.succeededCount, stored.deviceJobStatistics.deviceCount]).toEqual(['completed', 40, 40])
    })
    // every device patched; one whose outcome was not stored is patched again (its twin takes a job's patch once)
    expect(new Set(patched).size).toBe(40)
    await runner.close()
    await own.close()
  }, 30_000)
})
