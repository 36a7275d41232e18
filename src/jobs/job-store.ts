// Where scheduled jobs live (main thread; the query worker reads the per-device records for
// `devices.jobs`). Three LMDB databases:
// - `jobs`: the job records by id, all held in memory too (their number is bounded below);
// - `job-devices`: one record per device a job targeted, key `{jobId}/{deviceId}` ("/" is in
//   neither id), in the form `SELECT * FROM devices.jobs` returns;
// - `job-pages`: the page of targets a running job works through and where the target scan
//   resumes. A device record and its job's counts change in one transaction, so after a crash the
//   counts match the records and the page says exactly which devices are left.
import type { Database, RootDatabase } from 'lmdb'
import type { WriteHealth } from '../store/write-health.js'
import { HubError } from '../rest/hub-error.js'
import { TERMINAL, type JobRecord } from './job-request.js'

/** pending | running | completed | failed | canceled (single l, as Azure spells the device records) */
export type DeviceJobStatus = 'pending' | 'running' | 'completed' | 'failed' | 'canceled'

export interface DeviceJobRecord {
  deviceId: string
  jobId: string
  jobType: JobRecord['type']
  status: DeviceJobStatus
  createdDateTimeUtc: string
  lastUpdatedDateTimeUtc: string
  startTimeUtc?: string
  endTimeUtc?: string
  outcome: { deviceMethodResponse: { status: number; payload: unknown } } | null
  error?: { code: string; description: string }
}

export interface JobPage {
  /** the devices of this page, in id order (their records say which are done) */
  ids: string[]
  /** the target scan resumes after this device id */
  after?: string
  /** no targets beyond this page */
  scanDone: boolean
}

/** Azure keeps job history 30 days; past this many ended jobs the oldest go first. */
export const JOB_HISTORY_MS = 30 * 86_400_000
export const MAX_ENDED_JOBS = 1000
/** Device records removed per transaction when a job leaves history. */
const REMOVE_CHUNK = 1000

export const deviceJobKey = (jobId: string, deviceId: string) => `${jobId}/${deviceId}`

interface Batch { job: JobRecord; records: Set<DeviceJobRecord>; done: Promise<unknown> }

/** Ended jobs held in memory without their method payload or twin patch (up to 128 KB each, 1,000 of them). */
const slimmed = new WeakSet<JobRecord>()
function slim(j: JobRecord): JobRecord {
  const { cloudToDeviceMethod, updateTwin, ...rest } = j
  const s: JobRecord = { ...rest }
  if (cloudToDeviceMethod) s.cloudToDeviceMethod = { ...cloudToDeviceMethod, payload: null }
  if (updateTwin) s.updateTwin = { patch: {}, etag: updateTwin.etag }
  slimmed.add(s)
  return s
}

export class JobStore {
  private readonly jobs = new Map<string, JobRecord>()
  private readonly batches = new Map<string, Batch>()
  private pruning: Promise<number> | undefined
  /** ids being removed from history: not free for a new job until the removal is committed */
  private readonly leaving = new Set<string>()
  /** jobs whose final record is being committed: every write of them writes that one */
  private readonly finals = new Map<string, JobRecord>()
  /** jobs whose device operations are still under way (a cancelled job keeps its slot until they return) */
  readonly busy = new Set<string>()

  constructor(
    private readonly root: RootDatabase,
    private readonly jobsDb: Database,
    private readonly devicesDb: Database,
    private readonly pagesDb: Database,
    private readonly health?: WriteHealth,
  ) {
    for (const { value } of jobsDb.getRange()) {
      const j = value as JobRecord
      this.jobs.set(j.jobId, TERMINAL.has(j.status) ? slim(j) : j)
    }
  }

  get(jobId: string): JobRecord | undefined { return this.jobs.get(jobId) }

  /** The whole record, payload and patch included (an ended job's are read from the store). */
  full(job: JobRecord): JobRecord {
    return slimmed.has(job) ? ((this.jobsDb.get(job.jobId) as JobRecord | undefined) ?? job) : job
  }

  all(): IterableIterator<JobRecord> { return this.jobs.values() }

  activeCount(): number {
    let n = 0
    for (const j of this.jobs.values()) if (!TERMINAL.has(j.status) || this.busy.has(j.jobId)) n++
    return n
  }

  /** The record as it is to be written now: the final one while the end commits. */
  private stored(job: JobRecord): JobRecord {
    return this.finals.get(job.jobId) ?? job
  }

  /** The job as last committed (after writes failed, memory may be ahead of the store). */
  reload(jobId: string): JobRecord | undefined {
    this.root.resetReadTxn()
    const j = this.jobsDb.get(jobId) as JobRecord | undefined
    if (j) this.jobs.set(jobId, j)
    return j
  }

  /** The write runs when health allows; a failed write marks the store unhealthy and rethrows. */
  private write<T>(op: () => Promise<T>): Promise<T> {
    return this.health ? this.health.run(op) : op()
  }

  /**
   * Stores a new job; resolves once it is committed (the PUT is answered after). The id and the
   * active-job slot are taken at once, so two PUTs that arrive together cannot both have them.
   */
  async create(job: JobRecord, maxActive: number, tier: string): Promise<void> {
    this.health?.check()
    if (this.jobs.has(job.jobId) || this.leaving.has(job.jobId)) throw new HubError(409104, `Job ${job.jobId} already exists`)
    if (this.activeCount() >= maxActive) throw new HubError(429004, `this hub runs at most ${maxActive} active jobs on tier ${tier}; wait for one to end or cancel one`)
    this.jobs.set(job.jobId, job)
    try {
      await this.write(() => this.jobsDb.put(job.jobId, job))
    } catch (e) {
      this.jobs.delete(job.jobId)
      throw e
    }
  }

  /** Commits the job record as it is now (its status or counts changed). */
  save(job: JobRecord): Promise<unknown> {
    return this.write(() => this.jobsDb.put(job.jobId, this.stored(job)))
  }

  page(jobId: string): JobPage | undefined { return this.pagesDb.get(jobId) as JobPage | undefined }

  deviceRecord(jobId: string, deviceId: string): DeviceJobRecord | undefined {
    return this.devicesDb.get(deviceJobKey(jobId, deviceId)) as DeviceJobRecord | undefined
  }

  /** A new page of targets: its pending device records, the page and the job's counts, together. */
  startPage(job: JobRecord, page: JobPage, records: DeviceJobRecord[]): Promise<unknown> {
    return this.write(() => this.root.transaction(() => {
      for (const r of records) this.devicesDb.putSync(deviceJobKey(r.jobId, r.deviceId), r)
      this.pagesDb.putSync(job.jobId, page)
      this.jobsDb.putSync(job.jobId, this.stored(job))
    }))
  }

  /**
   * Device records and their job's counts, together. The changes one event-loop turn makes to a job
   * (its 16 devices in flight) share one transaction: records are written as they are when it runs.
   */
  saveDevices(job: JobRecord, records: DeviceJobRecord[]): Promise<unknown> {
    let batch = this.batches.get(job.jobId)
    if (!batch) {
      const b: Batch = { job, records: new Set(), done: Promise.resolve() }
      b.done = new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
        this.batches.delete(job.jobId)
        return this.write(() => this.root.transaction(() => {
          for (const r of b.records) this.devicesDb.putSync(deviceJobKey(r.jobId, r.deviceId), r)
          this.jobsDb.putSync(job.jobId, this.stored(job))
        }))
      })
      this.batches.set(job.jobId, (batch = b))
    }
    for (const r of records) batch.records.add(r)
    return batch.done
  }

  /**
   * The job ends as `final`: its page goes with the final record, and until that commits every other
   * write of the job writes `final` too (a device's outcome landing meanwhile must not bring back the
   * old status). Past the history's count, the oldest go.
   */
  async finish(job: JobRecord, final: JobRecord): Promise<void> {
    this.finals.set(job.jobId, final)
    try {
      await this.write(() => this.root.transaction(() => {
        this.pagesDb.removeSync(job.jobId)
        this.jobsDb.putSync(job.jobId, final)
      }))
      // the caller's record becomes `final`; the history keeps it without its payload or patch
      Object.assign(job, final)
      if (this.jobs.get(job.jobId) === job) this.jobs.set(job.jobId, slim(job))
    } finally {
      this.finals.delete(job.jobId)
    }
    // a client creating jobs fast (no throttle on the unlimited tier) must not outgrow the history
    if (this.jobs.size > MAX_ENDED_JOBS + 50) await this.prune()
  }

  /** Removes ended jobs older than the history (or beyond its count), with their device records; one pass at a time. */
  prune(now = Date.now()): Promise<number> {
    this.pruning ??= this.pruneNow(now).finally(() => { this.pruning = undefined })
    return this.pruning
  }

  /** A chunk of device records per transaction: a job of 100,000 devices goes in 100 of them. */
  private async pruneNow(now: number): Promise<number> {
    const ended = [...this.jobs.values()].filter((j) => TERMINAL.has(j.status)).sort((a, b) => (a.endTime ?? '').localeCompare(b.endTime ?? ''))
    const excess = ended.length - MAX_ENDED_JOBS
    const gone = ended.filter((j, i) => i < excess || now - Date.parse(j.endTime ?? j.createdTime) > JOB_HISTORY_MS)
    for (const j of gone) {
      // the id stays taken until its removal is committed (a new job under it would lose its records)
      this.jobs.delete(j.jobId)
      this.leaving.add(j.jobId)
      try {
        // "/" then "0": every key `{jobId}/…` sorts between them
        const range = { start: `${j.jobId}/`, end: `${j.jobId}0` }
        for (;;) {
          const keys = [...this.devicesDb.getKeys({ ...range, limit: REMOVE_CHUNK })]
          if (keys.length === 0) break
          await this.write(() => this.root.transaction(() => { for (const k of keys) this.devicesDb.removeSync(k) }))
        }
        await this.write(() => this.root.transaction(() => {
          this.pagesDb.removeSync(j.jobId)
          this.jobsDb.removeSync(j.jobId)
        }))
      } finally {
        this.leaving.delete(j.jobId)
      }
    }
    return gone.length
  }
}
