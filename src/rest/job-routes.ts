// Scheduled jobs (jobs.md, api-version 2021-04-12): `PUT /jobs/v2/{jobId}` creates one,
// `GET /jobs/v2/{jobId}` reads it, `POST /jobs/v2/{jobId}/cancel` cancels it, and
// `GET /jobs/v2/query?jobType=&jobStatus=` pages through them (x-ms-max-item-count and
// x-ms-continuation headers, as twin queries). Jobs need ServiceConnect (auth.md); a PUT is answered
// once the job is committed. Active jobs are limited by tier: 1 on F1 and S1, 5 on S2, 10 on S3
// (and on the unlimited tier, whose bound is S3's).
import type { JobRunner } from '../jobs/job-runner.js'
import type { JobStore } from '../jobs/job-store.js'
import { jobFromRequest, jobResponse, type JobRecord } from '../jobs/job-request.js'
import type { HubThrottles } from '../throttle/hub-throttles.js'
import { HubError } from './hub-error.js'
import type { Route } from './http-server.js'
import { requestedPageSize } from './query-routes.js'

// `query` is the listing's path, never a job's id
const JOB = /^\/jobs\/v2\/(?!query\/?$)([^/]+)\/?$/
const ACTIVE_JOBS: Record<string, number> = { F1: 1, S1: 1, S2: 5, S3: 10, unlimited: 10 }
const LIMITS = { throttle: 'jobs', standardOnly: 'jobs' } as const

export function maxActiveJobs(tier: string): number {
  return ACTIVE_JOBS[tier] ?? 1
}

/** The C# SDK sends .NET enum names (ScheduleDeviceMethod, Completed): filters match case-insensitively. */
function filter(value: string | null, name: string, allowed: readonly string[]): string | undefined {
  if (value === null || value === '') return undefined
  const v = allowed.find((a) => a.toLowerCase() === value.toLowerCase())
  if (!v) throw new HubError(400004, `${name} must be one of ${allowed.join(', ')}`)
  return v
}

/** A page of the listing stops at this many bytes of JSON (a job may carry a 128 KB payload). */
const MAX_PAGE_BYTES = 1024 * 1024
const order = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0)

/** Jobs in creation order (then id, by code unit: the order the continuation compares in); a continuation names the last one returned. */
function page(jobs: JobRecord[], size: number, continuation: string | undefined, full: (j: JobRecord) => Record<string, unknown>): { items: Record<string, unknown>[]; next?: string } {
  jobs.sort((a, b) => order(a.createdTime, b.createdTime) || order(a.jobId, b.jobId))
  let from = 0
  if (continuation !== undefined) {
    let after: [string, string]
    try {
      after = JSON.parse(Buffer.from(continuation, 'base64url').toString('utf8')) as [string, string]
      if (!Array.isArray(after) || typeof after[0] !== 'string' || typeof after[1] !== 'string') throw new Error()
    } catch {
      throw new HubError(400004, 'the continuation token is not one this hub issued')
    }
    from = jobs.findIndex((j) => order(j.createdTime, after[0]) > 0 || (j.createdTime === after[0] && order(j.jobId, after[1]) > 0))
    if (from === -1) from = jobs.length
  }
  const items: Record<string, unknown>[] = []
  let bytes = 0
  let i = from
  for (; i < jobs.length && items.length < size; i++) {
    const item = full(jobs[i]!)
    bytes += Buffer.byteLength(JSON.stringify(item))
    if (items.length > 0 && bytes > MAX_PAGE_BYTES) break
    items.push(item)
  }
  const last = jobs[i - 1]
  return i < jobs.length && last ? { items, next: Buffer.from(JSON.stringify([last.createdTime, last.jobId])).toString('base64url') } : { items }
}

export function jobRoutes(store: JobStore, runner: JobRunner, throttles: Pick<HubThrottles, 'limits'>): Route[] {
  const known = (id: string) => {
    const j = store.get(id)
    if (!j) throw new HubError(404002, `Job ${id} not found`)
    return j
  }
  return [
    {
      method: 'get', pattern: /^\/jobs\/v2\/query\/?$/, right: 'ServiceConnect', role: 'jobs/read', limits: LIMITS,
      handle(req) {
        const type = filter(req.query.get('jobType'), 'jobType', ['scheduleDeviceMethod', 'scheduleUpdateTwin', 'export', 'import'])
        const status = filter(req.query.get('jobStatus'), 'jobStatus', ['queued', 'scheduled', 'running', 'completed', 'failed', 'cancelled', 'enqueued', 'unknown'])
        const matching = [...store.all()].filter((j) => (type === undefined || j.type === type) && (status === undefined || j.status === status))
        const p = page(matching, requestedPageSize(req), req.headers['x-ms-continuation'] || undefined, (j) => jobResponse(store.full(j)))
        const headers: Record<string, string> = { 'x-ms-item-type': 'jobResponse' }
        if (p.next) headers['x-ms-continuation'] = p.next
        return { status: 200, body: p.items, headers }
      },
    },
    {
      method: 'put', pattern: JOB, right: 'ServiceConnect', role: 'jobs/write', limits: LIMITS,
      async handle(req) {
        const id = req.params[0]!
        const job = jobFromRequest(id, req.json())
        const tier = throttles.limits.tier
        await store.create(job, maxActiveJobs(tier), tier)
        const answer = jobResponse(job)
        runner.schedule(job)
        return { status: 200, body: answer }
      },
    },
    {
      method: 'get', pattern: JOB, right: 'ServiceConnect', role: 'jobs/read', limits: LIMITS,
      handle: (req) => ({ status: 200, body: jobResponse(store.full(known(req.params[0]!))) }),
    },
    {
      method: 'post', pattern: /^\/jobs\/v2\/([^/]+)\/cancel\/?$/, right: 'ServiceConnect', role: 'jobs/write', limits: LIMITS,
      async handle(req) {
        const job = known(req.params[0]!)
        await runner.cancel(job.jobId)
        return { status: 200, body: jobResponse(store.full(store.get(job.jobId) ?? job)) }
      },
    },
  ]
}
