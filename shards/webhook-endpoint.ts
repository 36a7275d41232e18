// An HTTP(S) webhook endpoint (Hyperhub's own endpoint type): each shard POSTs what it routed there
// as a JSON array of message records (the storage record shape), one request in flight at a time,
// up to 500 records a request. A network error, a timeout, 429 or a 5xx is retried with backoff up to
// maxDeliveryAttempts; then, or on another 4xx, the records are dropped and logged. Delivery is
// after the messages were accepted (not awaited by PUBACK) and held in memory: at most once across
// a crash. The queue is bounded; beyond it the oldest records are dropped.
import type { WebhookEndpointDef } from '../src/routing/routing-config.js'
import type { StoredEvent } from '../src/events/segment-codec.js'
import { messageRecord } from './storage-endpoint.js'

const MAX_BATCH = 500
const MAX_QUEUED = 50_000
const BACKOFF_MS = [100, 200, 400, 800, 1600, 3200, 5000]

export class WebhookEndpoint {
  private queue: Record<string, unknown>[] = []
  private sending: Promise<void> | null = null
  private closing = false
  private dropped = 0

  constructor(readonly def: WebhookEndpointDef, private readonly onProblem: (message: string, fields: Record<string, unknown>) => void) {}

  add(e: StoredEvent): void {
    this.queue.push(messageRecord(e))
    if (this.queue.length > MAX_QUEUED) {
      const over = this.queue.length - MAX_QUEUED
      this.queue.splice(0, over)
      this.dropped += over
    }
    if (!this.sending) this.sending = this.pump().finally(() => { this.sending = null })
  }

  private async pump(): Promise<void> {
    // let this turn's messages join the first request
    await new Promise((r) => setImmediate(r))
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, MAX_BATCH)
      await this.post(batch)
    }
    if (this.dropped > 0) {
      this.onProblem('webhook queue overflowed; oldest records dropped', { endpoint: this.def.name, dropped: this.dropped })
      this.dropped = 0
    }
  }

  private async post(batch: Record<string, unknown>[]): Promise<void> {
    const body = JSON.stringify(batch)
    for (let attempt = 1; ; attempt++) {
      let status = 0
      let reason = ''
      try {
        const res = await fetch(this.def.url, {
          method: 'POST', body, headers: { 'content-type': 'application/json; charset=utf-8', 'x-hyperhub-endpoint': this.def.name },
          signal: AbortSignal.timeout(this.def.timeoutInSeconds * 1000),
        })
        status = res.status
        await res.arrayBuffer().catch(() => undefined)
        if (status >= 200 && status < 300) return
        reason = `HTTP ${status}`
      } catch (e) {
        reason = (e as Error).name === 'TimeoutError' ? 'timed out' : (e as Error).message
      }
      const retryable = status === 0 || status === 429 || status >= 500
      if (!retryable || attempt >= this.def.maxDeliveryAttempts || this.closing) {
        // never the URL's query string: it may carry a key
        this.onProblem('webhook delivery failed; records dropped', { endpoint: this.def.name, records: batch.length, attempts: attempt, reason })
        return
      }
      await new Promise((r) => setTimeout(r, BACKOFF_MS[Math.min(attempt - 1, BACKOFF_MS.length - 1)]))
    }
  }

  /** Lets what is queued go out (bounded by the retries), then stops retrying. */
  async close(graceMs = 5000): Promise<void> {
    const done = this.sending ?? Promise.resolve()
    await Promise.race([done, new Promise((r) => setTimeout(r, graceMs).unref())])
    this.closing = true
  }
}
