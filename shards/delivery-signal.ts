// What an endpoint deliverer waits on: a commit that added to its outbox, a timer (its batch window,
// a retry's backoff), or being stopped. A wake that comes while the deliverer is busy is kept, so a
// commit is never missed between reading the outbox and waiting.
export class DeliverySignal {
  private woken = false
  private release: (() => void) | null = null
  private readonly stopping = new AbortController()

  get isStopped(): boolean { return this.stopping.signal.aborted }

  /** Aborts a request in flight when the deliverer stops. */
  get stopSignal(): AbortSignal { return this.stopping.signal }

  wake(): void {
    this.woken = true
    this.release?.()
  }

  stop(): void {
    this.stopping.abort()
    this.release?.()
  }

  /** Resolves at the next wake (at once if one came since the last wait), after `timeoutMs`, or on stop. */
  wait(timeoutMs?: number): Promise<void> {
    if (this.woken || this.isStopped) {
      this.woken = false
      return Promise.resolve()
    }
    return new Promise((resolve) => {
      const timer = timeoutMs === undefined ? undefined : setTimeout(() => done(), Math.max(0, timeoutMs))
      timer?.unref()
      const done = () => {
        clearTimeout(timer)
        this.release = null
        this.woken = false
        resolve()
      }
      this.release = done
    })
  }

  /** Waits `ms`, cut short only by stop (a retry's backoff must not end because more data came). */
  sleep(ms: number): Promise<void> {
    if (this.isStopped) return Promise.resolve()
    return new Promise((resolve) => {
      const timer = setTimeout(() => { this.stopSignal.removeEventListener('abort', done); resolve() }, ms)
      timer.unref()
      const done = () => { clearTimeout(timer); resolve() }
      this.stopSignal.addEventListener('abort', done, { once: true })
    })
  }

  /**
   * Runs `deliver` until it returns or the deliverer stops. When it throws (a write of the cursor or
   * the file failed), nothing moved: `failed` hears of it (the first time and every tenth) and it
   * runs again after `retryMs(failures)`.
   */
  async runUntilStopped(deliver: () => Promise<void>, failed: (e: Error) => void, retryMs: (failures: number) => number): Promise<void> {
    for (let failures = 0; !this.isStopped; failures++) {
      try {
        await deliver()
        return
      } catch (e) {
        if (failures === 0 || failures % 10 === 0) failed(e as Error)
        await this.sleep(retryMs(failures))
      }
    }
  }
}
