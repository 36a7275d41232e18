// Runs scheduled jobs: each waits for its startTime, then works through its targets a page at a
// time. The query worker picks a page of devices the condition holds for (never this event loop);
// the page's pending records are committed with the page; each device is marked running, then done,
// each mark committed with the job's counts (job-store.ts). Device operations go through the same
// paths as REST calls (the edge's method calls, the shards' twin updates), a few at a time and no
// faster than the tier's jobs-device-operations throttle, so live traffic keeps its share.
//
// After a restart a job resumes from its page: pending devices run; a twin update that was running
// runs again and the shard applies it once (it remembers the job); a method call that was running
// is not sent again (the device may have run it) and is marked failed. Devices the job had not
// reached when it was cancelled or ran out of time are marked canceled or failed.
import type { DeviceEdge } from '../edge/device-edge.js'
import type { Logger } from '../log.js'
import type { QueryPool } from '../query/query-pool.js'
import type { JobTargets } from '../query/job-targets.js'
import type { DeviceRegistry } from '../registry/device-registry.js'
import { HubError } from '../rest/hub-error.js'
import type { ShardPool } from '../shard-pool.js'
import type { HubThrottles } from '../throttle/hub-throttles.js'
import { TERMINAL, type JobRecord } from './job-request.js'
import type { DeviceJobRecord, DeviceJobStatus, JobPage, JobStore } from './job-store.js'

/** Devices a page holds: what a running job keeps in memory. */
export const TARGETS_PER_PAGE = 500
/** Device operations one job keeps in flight. */
export const DEVICE_OPS_IN_FLIGHT = 16
/** Twins one target scan reads at most, and for how long (the query worker is shared). */
const TWINS_PER_SCAN = 2000
const SCAN_MS = 50
/** How long a stop waits for device operations in flight (a method call may wait minutes for its device). */
const STOP_WAIT_MS = 2000
const PRUNE_INTERVAL_MS = 3_600_000
/** After a restart, method calls of a resumed job wait this long for their device to reconnect. */
export const RESUME_CONNECT_GRACE_MS = 60_000
/** A job stopped by failing store writes is picked up again from what is stored after this. */
const STORE_RETRY_MS = 5000

export interface JobRunnerDeps {
  store: JobStore
  queries: Pick<QueryPool, 'targets'>
  registry: Pick<DeviceRegistry, 'get'>
  edge: Pick<DeviceEdge, 'methods'>
  shards: Pick<ShardPool, 'request'>
  throttles: Pick<HubThrottles, 'admit' | 'bill'>
  log: Logger
}

/** One running job's state in memory: the records of its current page. */
interface Run {
  job: JobRecord
  records: Map<string, DeviceJobRecord>
  /** why it stops early: cancelled, out of time, or the hub stopping */
  stop?: 'cancelled' | 'expired' | 'closing' | 'store' | 'error'
  done: Promise<void>
  deadlineTimer?: NodeJS.Timeout
  /** devices a lane is working on now (a running record without one was interrupted) */
  inFlight: Set<string>
  /** resumed after a restart: devices get time to reconnect before a method call fails them */
  resumedAt?: number
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref())

function errorOf(e: unknown): { code: string; description: string } {
  return e instanceof HubError ? { code: e.codeName, description: e.message } : { code: 'ServerError', description: 'internal error' }
}

export class JobRunner {
  private readonly runs = new Map<string, Run>()
  private readonly startTimers = new Map<string, NodeJS.Timeout>()
  private readonly ending = new Map<string, Promise<void>>()
  private closed = false
  private pruneTimer: NodeJS.Timeout | undefined

  constructor(private readonly d: JobRunnerDeps) {}

  /** Resumes every job that had not ended, and keeps the history to its bounds (hourly). */
  start(): void {
    for (const job of this.d.store.all()) if (!TERMINAL.has(job.status)) this.schedule(job, true)
    const prune = () => {
      this.d.store.prune().catch((e: unknown) => this.d.log.warn('ended jobs not pruned', { error: e as Error }))
    }
    prune()
    this.pruneTimer = setInterval(prune, PRUNE_INTERVAL_MS)
    this.pruneTimer.unref()
  }

  /** A job was created (or resumed): run it now or at its startTime. */
  schedule(job: JobRecord, resumed = false): void {
    if (this.closed) return
    const wait = Date.parse(job.startTime) - Date.now()
    if (job.status === 'scheduled' && wait > 0) {
      // timers hold at most ~24.8 days; a later start re-arms
      const t = setTimeout(() => { this.startTimers.delete(job.jobId); this.schedule(job) }, Math.min(wait, 2 ** 31 - 1))
      t.unref()
      this.startTimers.set(job.jobId, t)
      return
    }
    const run: Run = { job, records: new Map(), done: Promise.resolve(), inFlight: new Set(), ...(resumed ? { resumedAt: Date.now() } : {}) }
    this.runs.set(job.jobId, run)
    // the job holds its active slot until its last device operation has returned, even once cancelled
    this.d.store.busy.add(job.jobId)
    run.done = this.execute(run).catch((e: unknown) => {
      if (this.closed) return // the store closes with the hub; the job resumes on the next start
      if (e instanceof HubError && e.status === 503) {
        // the store refuses writes (disk full, write errors): stop, and go on later from what is stored
        run.stop ??= 'store'
        this.d.log.warn('job paused: store writes fail; it goes on from its stored state', { jobId: job.jobId, retryMs: STORE_RETRY_MS })
        return
      }
      this.d.log.error('job failed', { jobId: job.jobId, error: e as Error })
      return this.end(run, 'failed', 'the hub could not run this job (see its log)')
    }).catch((e: unknown) => this.d.log.error('job record not stored', { jobId: job.jobId, error: e as Error }))
      .finally(() => {
        clearTimeout(run.deadlineTimer)
        this.runs.delete(job.jobId)
        this.d.store.busy.delete(job.jobId)
        if (run.stop === 'store') this.retryFromStore(job.jobId)
      })
  }

  /** After a store outage: the job as last committed (memory may be ahead of it) runs again. */
  private retryFromStore(jobId: string): void {
    const t = setTimeout(() => {
      this.startTimers.delete(jobId)
      if (this.closed) return
      const stored = this.d.store.reload(jobId)
      if (stored && !TERMINAL.has(stored.status)) this.schedule(stored, true)
    }, STORE_RETRY_MS)
    t.unref()
    this.startTimers.set(jobId, t)
  }

  /** Cancels a job that has not ended; resolves once its state is committed. */
  async cancel(jobId: string): Promise<void> {
    const timer = this.startTimers.get(jobId)
    if (timer) { clearTimeout(timer); this.startTimers.delete(jobId) }
    const run = this.runs.get(jobId)
    if (run) {
      run.stop ??= 'cancelled'
      // the devices not yet started are marked canceled now; those in flight record their outcome
      await this.settlePending(run, 'canceled')
      await this.end(run, 'cancelled')
      return
    }
    const job = this.d.store.get(jobId)
    if (job && !TERMINAL.has(job.status)) await this.end({ job, records: new Map(), done: Promise.resolve(), inFlight: new Set() }, 'cancelled')
  }

  private async execute(run: Run): Promise<void> {
    const { job } = run
    if (job.status !== 'running') {
      job.status = 'running'
      job.ranFrom = new Date().toISOString()
      await this.d.store.save(job)
    }
    const deadline = Date.parse(job.ranFrom!) + job.maxExecutionTimeInSeconds * 1000
    const expire = () => { run.stop ??= 'expired' }
    if (Date.now() >= deadline) expire()
    else run.deadlineTimer = setTimeout(expire, Math.min(deadline - Date.now(), 2 ** 31 - 1))
    run.deadlineTimer?.unref()
    let page: JobPage = this.d.store.page(job.jobId) ?? { ids: [], scanDone: false }
    for (const id of page.ids) {
      const r = this.d.store.deviceRecord(job.jobId, id)
      if (r) run.records.set(id, r)
    }
    while (!run.stop) {
      if (page.ids.length === 0) {
        if (page.scanDone) break
        page = await this.nextPage(run, page)
        continue
      }
      await this.runPage(run, page.ids)
      if (run.stop) break
      page = { ids: [], after: page.after, scanDone: page.scanDone }
      run.records.clear()
    }
    if (run.stop === 'closing' || run.stop === 'cancelled') return
    if (run.stop === 'expired') {
      await this.settlePending(run, 'failed', { code: 'GenericTimeout', description: `the job's maxExecutionTimeInSeconds (${job.maxExecutionTimeInSeconds}) passed before this device was reached` })
      await this.end(run, 'failed', `the job ran past its maxExecutionTimeInSeconds (${job.maxExecutionTimeInSeconds} s); devices not reached were marked failed`)
      return
    }
    await this.end(run, 'completed')
  }

  /** The next page of targets from the query worker, committed with its pending records. */
  private async nextPage(run: Run, page: JobPage): Promise<JobPage> {
    const { job } = run
    const found = await this.targets(run, page.after)
    if (!found) return page
    // cancelled or out of time while the worker scanned: this page is not started
    if (run.stop) return page
    const next: JobPage = { ids: found.ids, after: found.resumeAfter ?? found.ids[found.ids.length - 1] ?? page.after, scanDone: found.resumeAfter === undefined }
    const now = new Date().toISOString()
    const records = found.ids.map((deviceId): DeviceJobRecord => ({
      deviceId, jobId: job.jobId, jobType: job.type, status: 'pending', createdDateTimeUtc: now, lastUpdatedDateTimeUtc: now, outcome: null,
    }))
    for (const r of records) run.records.set(r.deviceId, r)
    job.deviceJobStatistics.deviceCount += records.length
    job.deviceJobStatistics.pendingCount += records.length
    await this.d.store.startPage(job, next, records)
    return next
  }

  /** A page of targets; while the query worker's queue is full (429), tries again each second until the job stops. */
  private async targets(run: Run, after: string | undefined): Promise<JobTargets | undefined> {
    while (!run.stop) {
      try {
        return await this.d.queries.targets({ condition: run.job.queryCondition, after, max: TARGETS_PER_PAGE, maxScanned: TWINS_PER_SCAN, maxMs: SCAN_MS })
      } catch (e) {
        if (!(e instanceof HubError) || e.status !== 429) throw e
        await sleep(1000)
      }
    }
    return undefined
  }

  private async runPage(run: Run, ids: string[]): Promise<void> {
    let next = 0
    const lane = async () => {
      try {
        while (next < ids.length && !run.stop) await this.runDevice(run, ids[next++]!)
      } catch (e) {
        // the other lanes stop after their current device; the page ends once all have
        run.stop ??= e instanceof HubError && e.status === 503 ? 'store' : 'error'
        throw e
      }
    }
    const lanes = await Promise.allSettled(Array.from({ length: Math.min(DEVICE_OPS_IN_FLIGHT, ids.length) }, lane))
    const failed = lanes.find((l): l is PromiseRejectedResult => l.status === 'rejected')
    if (failed) throw failed.reason
  }

  /** Moves a record to `status`, keeping the job's counts, and commits both. */
  private move(run: Run, r: DeviceJobRecord, status: DeviceJobStatus, extra: Partial<DeviceJobRecord> = {}): Promise<unknown> {
    const s = run.job.deviceJobStatistics
    const count = (st: DeviceJobStatus, by: number) => {
      if (st === 'pending') s.pendingCount += by
      else if (st === 'running') s.runningCount += by
      else if (st === 'completed') s.succeededCount += by
      else if (st === 'failed') s.failedCount += by
    }
    count(r.status, -1)
    count(status, 1)
    const now = new Date().toISOString()
    Object.assign(r, extra, { status, lastUpdatedDateTimeUtc: now })
    if (status === 'running') r.startTimeUtc = now
    else if (status !== 'pending') r.endTimeUtc = now
    return this.d.store.saveDevices(run.job, [r])
  }

  private async runDevice(run: Run, deviceId: string): Promise<void> {
    const r = run.records.get(deviceId)
    if (!r || (r.status !== 'pending' && r.status !== 'running')) return
    const { job } = run
    if (r.status === 'running' && job.type === 'scheduleDeviceMethod') {
      // interrupted by a restart: the device may have run it, so it is not sent twice
      await this.move(run, r, 'failed', { error: { code: 'JobRunInterrupted', description: 'the hub restarted while this method call was in flight; it was not sent again' } })
      return
    }
    if (!(await this.admitted(run))) return
    // a cancel or the deadline may have settled it while this lane waited for the throttle
    if (run.stop || (r.status !== 'pending' && r.status !== 'running')) return
    run.inFlight.add(deviceId)
    try {
      await this.operate(run, r, deviceId)
    } finally {
      run.inFlight.delete(deviceId)
    }
  }

  private async operate(run: Run, r: DeviceJobRecord, deviceId: string): Promise<void> {
    const { job } = run
    if (r.status === 'pending') await this.move(run, r, 'running')
    try {
      if (!this.d.registry.get(deviceId)) throw new HubError(404001, `Device ${deviceId} not registered`)
      if (job.type === 'scheduleDeviceMethod') {
        const m = job.cloudToDeviceMethod!
        const payload = Buffer.from(JSON.stringify(m.payload ?? null))
        // resumed after a restart: the devices are reconnecting; give them time before calling them offline
        const grace = run.resumedAt === undefined ? 0 : run.resumedAt + RESUME_CONNECT_GRACE_MS - Date.now()
        const connectMs = Math.max(m.connectTimeoutInSeconds * 1000, grace)
        const result = await this.d.edge.methods.invoke(deviceId, m.methodName, payload, m.responseTimeoutInSeconds * 1000, connectMs)
        this.bill(payload.length + Buffer.byteLength(JSON.stringify(result.payload ?? null)))
        await this.move(run, r, 'completed', { outcome: { deviceMethodResponse: { status: result.status, payload: result.payload } } })
      } else {
        const u = job.updateTwin!
        // the run id, not the job id: a job id may be used again once the old job left the history
        await this.d.shards.request('twin.update', deviceId, 'patch', u.patch, u.etag === '*' ? null : u.etag, job.runId ?? job.jobId)
        this.bill(Buffer.byteLength(JSON.stringify(u.patch)))
        await this.move(run, r, 'completed', { outcome: null })
      }
    } catch (e) {
      if (this.closed) return // the hub is stopping: the record stays running and resumes as above
      if (e instanceof HubError && e.status === 503 && e.code !== 503001) throw e // the store: the job pauses
      await this.move(run, r, 'failed', { error: errorOf(e) })
    }
  }

  private bill(bytes: number): void {
    try { this.d.throttles.bill('jobDeviceOps', bytes) } catch { /* the day's quota: the operation already ran */ }
  }

  /** Waits for the jobs-device-operations throttle; false if the job stopped meanwhile. */
  private async admitted(run: Run): Promise<boolean> {
    for (;;) {
      if (run.stop) return false
      const a = this.d.throttles.admit('jobDeviceOps')
      if (a.kind === 'now') return true
      // queued: our turn comes after waitMs; refused (backlog full): try again shortly. The wait is
      // slept in slices so that a stop (the deadline, a cancel, the hub stopping) ends it soon.
      const until = Date.now() + (a.kind === 'queued' ? a.waitMs : 100)
      while (!run.stop && Date.now() < until) await sleep(Math.min(100, until - Date.now()))
      if (a.kind === 'queued') return !run.stop
    }
  }

  /** Marks the current page's devices that have not started. */
  private async settlePending(run: Run, status: DeviceJobStatus, error?: { code: string; description: string }): Promise<void> {
    // a running record no lane holds was interrupted by a restart: settled with the pending ones
    const pending = [...run.records.values()].filter((r) => r.status === 'pending' || (r.status === 'running' && !run.inFlight.has(r.deviceId)))
    if (pending.length === 0) return
    const s = run.job.deviceJobStatistics
    const now = new Date().toISOString()
    for (const r of pending) {
      if (r.status === 'pending') s.pendingCount--
      else s.runningCount--
      r.status = status
      r.lastUpdatedDateTimeUtc = now
      r.endTimeUtc = now
      if (error) r.error = error
      if (status === 'failed') s.failedCount++
    }
    await this.d.store.saveDevices(run.job, pending)
  }

  /** Ends the job: its final record is committed before the status changes in memory (and before any answer). */
  private end(run: Run, status: 'completed' | 'failed' | 'cancelled', failureReason?: string): Promise<void> {
    const { job } = run
    const pending = this.ending.get(job.jobId)
    if (pending) return pending
    if (TERMINAL.has(job.status)) return Promise.resolve()
    const final: JobRecord = { ...job, status, endTime: new Date().toISOString(), ...(failureReason ? { failureReason } : {}) }
    const ending = this.d.store.finish(job, final).finally(() => this.ending.delete(job.jobId))
    this.ending.set(job.jobId, ending)
    return ending
  }

  /** Stops every job where it is; they resume on the next start. */
  async close(): Promise<void> {
    this.closed = true
    clearInterval(this.pruneTimer)
    for (const t of this.startTimers.values()) clearTimeout(t)
    this.startTimers.clear()
    const runs = [...this.runs.values()]
    for (const r of runs) r.stop ??= 'closing'
    await Promise.race([Promise.all(runs.map((r) => r.done)), sleep(STOP_WAIT_MS)])
  }
}
