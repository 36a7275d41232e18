// A connection's reading stopped for a while by the tier's traffic shaping (MQTT and AMQP alike):
// set for `ms`, then lifted; the connection re-evaluates whether it reads each time.
export class ReadingPause {
  active = false
  private timer: NodeJS.Timeout | undefined

  constructor(private readonly changed: () => void) {}

  for(ms: number): void {
    clearTimeout(this.timer)
    this.active = true
    this.changed()
    this.timer = setTimeout(() => {
      this.active = false
      this.changed()
    }, ms)
  }

  /** The connection closed: no timer outlives it. */
  clear(): void { clearTimeout(this.timer) }
}
