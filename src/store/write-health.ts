// Whether this thread can write to the store. A write that fails (disk full, I/O error, a
// write-protected file) fails the operations that depended on it; from then on new writes are
// refused at once with Azure's server-busy answer instead of being tried and failing one by one,
// while reads and connected devices go on being served. A probe finds out when writing works
// again. The first failure and the recovery are logged once each.
//
// Writes are also refused while the data directory's disk has less than a reserve free: lmdb-js
// (3.5) corrupts its heap after a few commits fail on a full disk (seen here: "malloc(): invalid
// next size" after four), so the hub stops writing before the disk is full rather than after, and
// the probe writes a plain file, never a commit. After a failure that comes back, the probe waits
// twice as long each time, so an error that persists costs few failed commits.
import { open, rm, statfs } from 'node:fs/promises'
import { join } from 'node:path'
import { HubError } from '../rest/hub-error.js'

export const PROBE_INTERVAL_MS = 1000
const MAX_BACKOFF_MS = 300_000
/** Writable this long in one stretch: the backoff starts again from the shortest wait. */
const HEALTHY_RESET_MS = 300_000
const PROBE_BYTES = 1024 * 1024

export class StoreUnavailableError extends HubError {
  constructor(reason: string) {
    super(503005, `the hub cannot store data right now (${reason}); retry later`)
  }
}

export interface WriteHealthOptions {
  report: (event: 'failed' | 'recovered', fields: Record<string, unknown>) => void
  /** the directory whose file system is watched and probed, and the free bytes below which writes stop */
  dataDir: string
  minFreeBytes: number
  /** names this thread's probe file */
  name: string
  intervalMs?: number
}

export class WriteHealth {
  private failure: string | null = null
  private readonly timer: NodeJS.Timeout
  private probing = false
  private closed = false
  private failures = 0
  private failedAt = 0
  private recoveredAt = 0

  private get intervalMs(): number { return this.o.intervalMs ?? PROBE_INTERVAL_MS }

  constructor(private readonly o: WriteHealthOptions) {
    this.timer = setInterval(() => void this.tick(), this.intervalMs)
    this.timer.unref()
  }

  get writable(): boolean { return this.failure === null }

  /** Throws the server-busy error while writes are refused. */
  check(): void {
    if (this.failure !== null) throw new StoreUnavailableError(this.failure)
  }

  /** Runs a write: refused at once while writes are off; a failure switches them off and answers server busy. */
  async run<T>(write: () => Promise<T>): Promise<T> {
    this.check()
    try {
      return await write()
    } catch (e) {
      this.failed(e)
      throw this.error()
    }
  }

  /** The error to answer with for a failed or refused write. */
  error(): StoreUnavailableError {
    return new StoreUnavailableError(this.failure ?? 'a write failed')
  }

  /** Every failed write reports here; the first one switches writes off until the probe succeeds. */
  failed(e: unknown): void {
    if (this.failure !== null || this.closed) return
    if (Date.now() - this.recoveredAt > HEALTHY_RESET_MS) this.failures = 0
    this.failures++
    this.failure = describe(e)
    this.failedAt = Date.now()
    this.o.report('failed', { error: this.failure })
    // lmdb-js puts the cause of a failed commit on a promise of its own
    const cause = (e as { commitError?: Promise<unknown> } | undefined)?.commitError
    if (cause && typeof cause.catch === 'function') cause.catch((c: unknown) => { if (this.failure !== null) this.failure = describe(c) })
  }

  /** A plain file written, flushed and removed: whether the disk takes writes, without risking a commit. */
  private async probe(): Promise<void> {
    const file = join(this.o.dataDir, `.write-probe-${this.o.name}`)
    const handle = await open(file, 'w', 0o600)
    try {
      await handle.write(Buffer.alloc(PROBE_BYTES))
      await handle.sync()
    } finally {
      await handle.close()
      await rm(file, { force: true })
    }
  }

  /** Free bytes below the reserve, as a reason; undefined when there is room (or nothing to watch). */
  private async lowSpace(): Promise<string | undefined> {
    if (this.o.minFreeBytes <= 0) return undefined
    const s = await statfs(this.o.dataDir)
    const free = s.bavail * s.bsize
    if (free >= this.o.minFreeBytes) return undefined
    return `the disk of the data directory has ${Math.floor(free / 1048576)} MB free, below the ${Math.floor(this.o.minFreeBytes / 1048576)} MB reserve`
  }

  private async tick(): Promise<void> {
    if (this.probing || this.closed) return
    this.probing = true
    try {
      const low = await this.lowSpace().catch(() => undefined)
      if (low) {
        // the reason stays current while the disk fills further (it is what refused writes answer)
        if (this.failure !== null && this.failure.startsWith('the disk of the data directory has')) this.failure = low
        return this.failed({ message: low })
      }
      if (this.failure === null) return
      const wait = Math.min(this.intervalMs * 2 ** (this.failures - 1), MAX_BACKOFF_MS)
      if (Date.now() - this.failedAt < wait) return
      await this.probe()
      if (this.closed || this.failure === null) return
      this.failure = null
      this.recoveredAt = Date.now()
      this.o.report('recovered', {})
    } catch {
      // still failing: the next tick tries again
    } finally {
      this.probing = false
    }
  }

  close(): void {
    this.closed = true
    clearInterval(this.timer)
  }
}

/** lmdb-js rejects a failed commit with a generic message and the cause on `commitError`. */
function describe(e: unknown): string {
  const err = e as { message?: string; code?: unknown } | undefined
  const code = typeof err?.code === 'string' || typeof err?.code === 'number' ? ` (${String(err.code)})` : ''
  return `${err?.message ?? String(e)}${code}`
}
