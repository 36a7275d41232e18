// Import and export jobs (the v1 jobs API, identity-registry.md "Import/export jobs"): one at a
// time hub-wide (429004 while one is enqueued or running), each run on the main thread in bounded
// steps (registry-export.ts, registry-import.ts). Job records live in LMDB `import-export-jobs`
// and in memory, kept 30 days (at most the newest 1,000 ended ones). The container SAS URIs are
// kept in memory only, for the run: a job that was running when the hub stopped or crashed cannot
// be resumed without them, so it is marked failed at the next start, saying why.
import { randomUUID } from 'node:crypto'
import type { Database, RootDatabase } from 'lmdb'
import type { BulkRegistry } from '../registry/bulk-registry.js'
import type { DeviceRegistry } from '../registry/device-registry.js'
import type { ModuleRegistry } from '../registry/module-registry.js'
import { HubError } from '../rest/hub-error.js'
import type { WriteHealth } from '../store/write-health.js'
import type { Logger } from '../log.js'
import { BlockBlobWriter } from './block-blob-writer.js'
import { exportConfigurations, importConfigurations } from './configurations-file.js'
import type { ConfigurationStore } from '../configurations/configuration-store.js'
import { JOB_HISTORY_MS, MAX_ENDED_JOBS } from './job-store.js'
import type { ContainerClient } from '@azure/storage-blob'
import { openContainer, STORE_TRY_MS, storeRefusal, type ContainerPolicy, type ContainerSas, type JobContainer } from './container-sas.js'
import { parseImportExportRequest, type ImportExportRequest } from './import-export-request.js'
import { streamLines } from './json-lines.js'
import { exportRegistry } from './registry-export.js'
import { importRegistry, ImportStopped, MAX_LINE_BYTES, type ImportCounts } from './registry-import.js'

export type ImportExportStatus = 'enqueued' | 'running' | 'completed' | 'failed' | 'cancelled'

/** A job as stored and (without `endedAtMs`) answered: Azure's JobProperties, SAS left out of the URIs. */
export interface ImportExportJob {
  jobId: string
  type: 'export' | 'import'
  status: ImportExportStatus
  startTimeUtc: string
  endTimeUtc?: string
  /** percent */
  progress: number
  inputBlobContainerUri?: string
  inputBlobName?: string
  outputBlobContainerUri: string
  outputBlobName: string
  excludeKeysInExport?: boolean
  includeConfigurations?: boolean
  configurationsBlobName?: string
  storageAuthenticationType: 'keyBased'
  failureReason?: string
  /** what the job did: counts of identities exported, lines imported and failed */
  statusMessage?: string
  endedAtMs?: number
}

export interface ImportExportJobsOptions {
  /** LMDB `import-export-jobs` */
  db: Database
  root: RootDatabase
  /** LMDB `twins` (committed twins, read by exports) */
  twins: Database
  registry: DeviceRegistry
  modules: ModuleRegistry
  /** configurations, exported and imported when a job asks (includeConfigurations) */
  configurations: ConfigurationStore
  /** the per-item logic import lines go through; with module support */
  bulk: BulkRegistry
  containers: ContainerPolicy
  log: Logger
  health?: WriteHealth
}

/** Progress is committed at most this often while a job runs (it is in memory at once). */
const PROGRESS_SAVE_MS = 2000
/** How long a cancelled import may take to write its error log before its writes are cut off. */
const CANCEL_LOG_MS = 5000
const TERMINAL = new Set<ImportExportStatus>(['completed', 'failed', 'cancelled'])
const RESTARTED = 'the hub stopped or restarted while the job ran; import and export jobs are not resumed (their SAS URIs are not stored): create the job again'

interface Running {
  job: ImportExportJob
  request: ImportExportRequest
  /** aborts reads of the input (cancel) */
  input: AbortController
  /** aborts writes to the output (cancel of an export, the hub stopping) */
  output: AbortController
  cancelled: boolean
  done: Promise<void>
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve))

/** JobProperties as the SDKs read them. */
function answer(job: ImportExportJob): Record<string, unknown> {
  const { endedAtMs: _, ...visible } = job
  return visible
}

export class ImportExportJobs {
  private readonly jobs = new Map<string, ImportExportJob>()
  private active?: Running
  private closing = false
  private readonly recovered: Promise<unknown>

  constructor(private readonly o: ImportExportJobsOptions) {
    const interrupted: ImportExportJob[] = []
    for (const { value } of o.db.getRange()) {
      const job = value as ImportExportJob
      if (!TERMINAL.has(job.status)) {
        Object.assign(job, { status: 'failed', failureReason: RESTARTED, endTimeUtc: new Date().toISOString(), endedAtMs: Date.now() })
        interrupted.push(job)
      }
      this.jobs.set(job.jobId, job)
    }
    for (const job of interrupted) o.log.warn('an import or export job was running when the hub stopped; it is marked failed', { jobId: job.jobId, type: job.type })
    this.recovered = Promise.all(interrupted.map((j) => this.save(j))).catch((e: unknown) => o.log.error('interrupted import/export jobs not marked failed', { error: e as Error }))
    this.prune()
  }

  private save(job: ImportExportJob): Promise<unknown> {
    const put = () => this.o.db.put(job.jobId, job)
    return this.o.health ? this.o.health.run(put) : put()
  }

  /** `POST /jobs/create`: checks the request, takes the hub's one slot, stores the job, answers it enqueued and starts it. */
  async create(body: unknown): Promise<Record<string, unknown>> {
    this.o.health?.check()
    if (this.closing) throw new HubError(503005, 'the hub is stopping')
    const request = parseImportExportRequest(body, this.o.containers)
    if (this.active) {
      throw new HubError(429004, `an ${this.active.job.type} job (${this.active.job.jobId}) is ${this.active.job.status}: a hub runs one import or export job at a time; wait for it to end or cancel it`)
    }
    this.prune()
    const job: ImportExportJob = {
      jobId: randomUUID(), type: request.type, status: 'enqueued', startTimeUtc: new Date().toISOString(), progress: 0,
      ...(request.input ? { inputBlobContainerUri: request.input.redacted, inputBlobName: request.inputBlobName } : {}),
      outputBlobContainerUri: request.output.redacted, outputBlobName: request.outputBlobName,
      ...(request.type === 'export' ? { excludeKeysInExport: request.excludeKeys } : {}),
      ...(request.configurationsBlobName ? { includeConfigurations: true, configurationsBlobName: request.configurationsBlobName } : {}),
      storageAuthenticationType: 'keyBased',
    }
    // the slot is taken before the first await: two creates that arrive together cannot both have it
    const running: Running = { job, request, input: new AbortController(), output: new AbortController(), cancelled: false, done: Promise.resolve() }
    this.active = running
    try {
      await this.save(job)
    } catch (e) {
      this.active = undefined
      throw e
    }
    this.jobs.set(job.jobId, job)
    const answered = answer(job)
    running.done = this.run(running)
    return answered
  }

  list(): Record<string, unknown>[] {
    this.prune()
    return [...this.jobs.values()].map(answer)
  }

  get(jobId: string): Record<string, unknown> {
    return answer(this.known(jobId))
  }

  private known(jobId: string): ImportExportJob {
    const job = this.jobs.get(jobId)
    if (!job) throw new HubError(404002, `Job ${jobId} not found`)
    return job
  }

  /**
   * `DELETE /jobs/{jobId}`: an enqueued or running job stops at its next step (an import after the
   * batch it is applying; the lines applied stay applied) and is answered once it has; an ended job
   * is answered as it is.
   */
  async cancel(jobId: string): Promise<Record<string, unknown>> {
    const job = this.known(jobId)
    const running = this.active
    if (running?.job === job && !TERMINAL.has(job.status)) {
      running.cancelled = true
      running.input.abort()
      // an export's blob is never committed when cancelled: its writes in flight go too; a cancelled
      // import still writes its error log, but a store that does not take it in a few seconds is cut off
      if (job.type === 'export') running.output.abort()
      const cutOff = setTimeout(() => running.output.abort(), CANCEL_LOG_MS)
      cutOff.unref()
      await running.done.finally(() => clearTimeout(cutOff))
    }
    return answer(job)
  }

  private async run(r: Running): Promise<void> {
    const { job } = r
    const containers: JobContainer[] = []
    const open = (sas: ContainerSas): ContainerClient => {
      const c = openContainer(sas, this.o.containers)
      containers.push(c)
      return c.client
    }
    let lastSaveMs = 0
    const progress = (percent: number) => {
      job.progress = Math.max(0, Math.min(99, Math.floor(percent)))
      if (Date.now() - lastSaveMs < PROGRESS_SAVE_MS) return
      lastSaveMs = Date.now()
      this.save(job).catch((e: unknown) => this.o.log.warn('import/export job progress not stored', { jobId: job.jobId, error: e as Error }))
    }
    let ending: Partial<ImportExportJob>
    try {
      await turn() // the create is answered first
      if (r.cancelled) throw new Cancelled()
      job.status = 'running'
      await this.save(job)
      ending = r.request.type === 'export' ? await this.runExport(r, open, progress) : await this.runImport(r, open, progress)
      if (r.cancelled) ending = { status: 'cancelled', statusMessage: ending.statusMessage }
    } catch (e) {
      ending = this.failure(r, e)
    } finally {
      for (const c of containers) c.close()
    }
    const final: ImportExportJob = { ...job, ...ending, endTimeUtc: new Date().toISOString(), endedAtMs: Date.now() }
    if (final.status === 'completed') final.progress = 100
    this.o.log.info('import/export job ended', { jobId: job.jobId, type: job.type, status: final.status, failureReason: final.failureReason, statusMessage: final.statusMessage })
    try {
      // stored before it is shown: a GET (or the cancel's answer) never reports an end the store has not got
      await this.save(final)
    } catch (e) {
      this.o.log.error('import/export job end not stored; it reads as failed after a restart', { jobId: job.jobId, error: e as Error })
    } finally {
      Object.assign(job, final)
      this.active = undefined
    }
  }

  private failure(r: Running, e: unknown): Partial<ImportExportJob> {
    if (r.cancelled && (e instanceof Cancelled || isAbort(e))) return { status: 'cancelled' }
    if (this.closing) return { status: 'failed', failureReason: RESTARTED }
    if (e instanceof JobFailure || e instanceof ImportStopped) return { status: 'failed', failureReason: e.message }
    this.o.log.error('import/export job failed', { jobId: r.job.jobId, error: e as Error })
    return { status: 'failed', failureReason: `internal error: ${(e as Error)?.message ?? String(e)}` }
  }

  private async runExport(r: Running, open: (sas: ContainerSas) => ContainerClient, progress: (p: number) => void): Promise<Partial<ImportExportJob>> {
    const name = r.request.outputBlobName
    const out = new BlockBlobWriter(open(r.request.output).getBlockBlobClient(name), r.output.signal)
    const what = `the export could not write ${name} to the output container`
    const counts = await exportRegistry({ registry: this.o.registry, modules: this.o.modules, twins: this.o.twins, root: this.o.root }, out, {
      excludeKeys: r.request.excludeKeys, isCancelled: () => r.cancelled || this.closing, progress: (done, total) => progress((done * 100) / total),
    }).catch((e: unknown) => { throw blobFailure(e, what, r) })
    if (r.cancelled) return {}
    if (this.closing) throw new JobFailure(RESTARTED)
    let configurations = ''
    const configurationsBlob = r.request.configurationsBlobName
    if (configurationsBlob) {
      const file = new BlockBlobWriter(open(r.request.output).getBlockBlobClient(configurationsBlob), r.output.signal)
      const failed = `the export could not write ${configurationsBlob} to the output container`
      const n = await exportConfigurations(this.o.configurations, (line) => file.write(line)).catch((e: unknown) => { throw blobFailure(e, failed, r) })
      await file.commit().catch((e: unknown) => { throw blobFailure(e, failed, r) })
      configurations = ` and ${n} configurations`
    }
    await out.commit().catch((e: unknown) => { throw blobFailure(e, what, r) })
    return { status: 'completed', statusMessage: `exported ${counts.devices} devices and ${counts.modules} modules${configurations}` }
  }

  private async runImport(r: Running, open: (sas: ContainerSas) => ContainerClient, progress: (p: number) => void): Promise<Partial<ImportExportJob>> {
    const { inputBlobName, outputBlobName } = r.request as Required<ImportExportRequest>
    const errorLog = open(r.request.output).getBlockBlobClient(outputBlobName)
    const writeFailed = `the import could not write ${outputBlobName} to the output container`
    // written empty first: the output container is proven writable before any line is applied, and
    // an older log does not stand for this import's
    await errorLog.upload(Buffer.alloc(0), 0, { abortSignal: r.output.signal }).catch((e: unknown) => { throw blobFailure(e, writeFailed, r) })
    const readFailed = `the import could not read ${inputBlobName} from the input container`
    const errors = new BlockBlobWriter(errorLog, r.output.signal, 1024 * 1024)
    // a failure to write the error log is the output container's, not the input's
    const logError = (e: unknown) => errors.write(JSON.stringify(e) + '\n').catch((x: unknown) => { throw isStoreError(x) ? blobFailure(x, writeFailed, r) : x })
    const counts: ImportCounts = { lines: 0, imported: 0, failed: 0 }
    try {
      const download = await open(r.request.input!).getBlockBlobClient(inputBlobName).download(0, undefined, { abortSignal: r.input.signal, maxRetryRequests: 5 })
      const size = download.contentLength ?? 0
      const body = idleAborted(download.readableStreamBody as AsyncIterable<Buffer> | undefined, r.input, STORE_TRY_MS)
      if (body) {
        await importRegistry(streamLines(body, MAX_LINE_BYTES), this.o.bulk, this.o.registry, {
          isCancelled: () => r.cancelled || this.closing,
          progress: (offset) => progress(size > 0 ? (offset * 100) / size : 0),
          reportError: logError,
        }, counts)
      }
    } catch (e) {
      // cancelled (whatever the aborted read threw): the lines that failed so far are still written below
      if (!r.cancelled && !this.closing && isAbort(e)) throw new JobFailure(`${readFailed}: the blob store sent nothing for ${STORE_TRY_MS / 1000} s`)
      if (!r.cancelled) throw isStoreError(e) ? blobFailure(e, readFailed, r) : e
    }
    let summary = `imported ${counts.imported} of ${counts.lines} lines; ${counts.failed} failed${counts.failed > 0 ? ` (see ${outputBlobName})` : ''}`
    const configurationsBlob = r.request.configurationsBlobName
    if (configurationsBlob && !r.cancelled && !this.closing) {
      const configurationsFailed = `the import could not read ${configurationsBlob} from the input container`
      try {
        const download = await open(r.request.input!).getBlockBlobClient(configurationsBlob).download(0, undefined, { abortSignal: r.input.signal, maxRetryRequests: 5 })
        const body = idleAborted(download.readableStreamBody as AsyncIterable<Buffer> | undefined, r.input, STORE_TRY_MS)
        const c = body ? await importConfigurations(streamLines(body, MAX_LINE_BYTES), this.o.configurations, {
          isCancelled: () => r.cancelled || this.closing,
          reportError: logError,
        }) : { lines: 0, imported: 0, failed: 0 }
        summary += `; configurations: imported ${c.imported} of ${c.lines}; ${c.failed} failed`
      } catch (e) {
        if (!r.cancelled) throw isStoreError(e) ? blobFailure(e, configurationsFailed, r) : e
      }
    }
    await errors.commit().catch((e: unknown) => { throw blobFailure(e, writeFailed, r) })
    if (this.closing && !r.cancelled) throw new JobFailure(RESTARTED)
    return { status: 'completed', statusMessage: summary }
  }

  /** Ended jobs older than the history, or beyond its count, go (the oldest first). */
  private prune(now = Date.now()): void {
    const ended = [...this.jobs.values()].filter((j) => TERMINAL.has(j.status)).sort((a, b) => (a.endedAtMs ?? 0) - (b.endedAtMs ?? 0))
    const excess = ended.length - MAX_ENDED_JOBS
    const gone = ended.filter((j, i) => i < excess || now - (j.endedAtMs ?? 0) > JOB_HISTORY_MS)
    if (gone.length === 0) return
    for (const j of gone) this.jobs.delete(j.jobId)
    const remove = () => this.o.root.transaction(() => { for (const j of gone) this.o.db.removeSync(j.jobId) })
    ;(this.o.health ? this.o.health.run(remove) : remove()).catch((e: unknown) => this.o.log.warn('old import/export jobs not removed; removed at a later start', { error: e as Error }))
  }

  /** Stops a running job (it ends failed: the hub stopped) and waits for its record to be stored. */
  async close(): Promise<void> {
    this.closing = true
    const r = this.active
    if (r) {
      r.input.abort()
      r.output.abort()
      await r.done
    }
    await this.recovered
  }
}

/** A download body that aborts `controller` when no chunk has come for `ms` (a store that stalls mid-blob). */
function idleAborted(body: AsyncIterable<Buffer> | undefined, controller: AbortController, ms: number): AsyncIterable<Buffer> | undefined {
  if (!body) return undefined
  return (async function* () {
    let timer = setTimeout(() => controller.abort(), ms)
    try {
      for await (const chunk of body) {
        clearTimeout(timer)
        yield chunk
        timer = setTimeout(() => controller.abort(), ms)
      }
    } finally {
      clearTimeout(timer)
    }
  })()
}

const isAbort = (e: unknown) => (e as Error)?.name === 'AbortError'
/** An error of the blob store or the network under it (a line's own failure is a HubError and never thrown). */
const isStoreError = (e: unknown) => !isAbort(e) && ((e as Error)?.name === 'RestError' || typeof (e as { code?: unknown })?.code === 'string')

class Cancelled extends Error {}
/** A failure the job reports as its failureReason, as it is. */
class JobFailure extends Error {}

/** What the blob store answered, as a failure of the job (cancel and stop are told apart by the caller). */
function blobFailure(e: unknown, what: string, r: Running): Error {
  if (r.cancelled && isAbort(e)) return e as Error
  if (e instanceof JobFailure || e instanceof ImportStopped) return e
  return new JobFailure(storeRefusal(e, what))
}
