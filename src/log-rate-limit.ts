// A bound on how many lines one kind of event may write to the log: a flood of refused connections
// must not fill the disk. Past `perWindow` lines in a window the rest are counted, and the count is
// written once when the next window opens.
export class LogRateLimit {
  private windowStart = 0
  private written = 0
  private suppressed = 0

  constructor(private readonly perWindow: number, private readonly windowMs: number, private readonly reportSuppressed: (count: number) => void) {}

  /** Whether this event may be written now. */
  allow(now = Date.now()): boolean {
    if (now - this.windowStart >= this.windowMs) {
      if (this.suppressed > 0) this.reportSuppressed(this.suppressed)
      this.windowStart = now
      this.written = 0
      this.suppressed = 0
    }
    if (this.written < this.perWindow) {
      this.written++
      return true
    }
    this.suppressed++
    return false
  }
}
