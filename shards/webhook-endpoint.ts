// An HTTP(S) webhook endpoint partition (Hyperhub's own endpoint type): what routing sent there is
// read from the partition's outbox and POSTed as JSON arrays of message records (the storage record
// shape), at most MAX_BATCH_RECORDS records and MAX_BATCH_BYTES bytes a request, one request in
// flight per partition, in order. A network error, a timeout, 429 or a 5xx is retried with backoff up
// to maxDeliveryAttempts; then, or on a 3xx or another 4xx, the batch is dropped and logged once. The
// cursor moves after each batch, so delivery is at least once: after a crash the receiver may get a
// batch again, but no gap. What waits for a hung receiver waits on disk, not in memory.
import type { Database } from 'lmdb'
import type { WebhookEndpointDef } from '../src/routing/routing-config.js'
import { DeliverySignal } from './delivery-signal.js'
import { outboxEvents, trimDelivered } from './endpoint-outbox.js'
import { messageRecord } from './message-record.js'
import type { OutboxCursor, OutboxCursors, OutboxId } from './outbox-cursors.js'
import { postRecords, webhookDispatcher } from './webhook-request.js'
import type { DestinationPolicy } from '../src/routing/webhook-destination.js'

export const MAX_BATCH_RECORDS = 500
export const MAX_BATCH_BYTES = 1024 * 1024
const BACKOFF_MS = [100, 200, 400, 800, 1600, 3200, 5000]

let heldBytes = 0
let peakHeldBytes = 0

/** Request bodies the webhook deliverers of this thread hold now, and the most they held at once. */
export function webhookMemory(): { heldBytes: number; peakHeldBytes: number } {
  return { heldBytes, peakHeldBytes }
}

export interface WebhookDelivererOptions {
  def: WebhookEndpointDef
  partition: number
  outbox: Database
  cursors: OutboxCursors
  problem(message: string, fields: Record<string, unknown>): void
  /** where webhooks may go (read at each connection) */
  policy(): DestinationPolicy
}

interface Batch { body: string; bytes: number; records: number; next: number }

export class WebhookDeliverer {
  private readonly signal = new DeliverySignal()
  private readonly id: OutboxId
  private readonly done: Promise<void>
  private readonly dispatcher: ReturnType<typeof webhookDispatcher>

  constructor(private readonly o: WebhookDelivererOptions) {
    this.id = { kind: 'webhook', name: o.def.name, partition: o.partition }
    this.dispatcher = webhookDispatcher(o.def, o.policy)
    this.done = this.run()
  }

  /** More events were committed to the outbox. */
  wake(): void { this.signal.wake() }

  /** Aborts the request in flight (it is sent again after a restart); the rest stays in the outbox. */
  async stop(): Promise<void> {
    this.signal.stop()
    await this.done
    await this.dispatcher.destroy().catch(() => {})
  }

  /** The cursor could not be stored (disk full): the batch goes again from the stored cursor. */
  private run(): Promise<void> {
    return this.signal.runUntilStopped(() => this.deliver(),
      (e) => this.o.problem('webhook cursor update failed; retrying', { endpoint: this.o.def.name, partition: this.o.partition, error: e.message }),
      () => BACKOFF_MS[BACKOFF_MS.length - 1]!)
  }

  private async deliver(): Promise<void> {
    let cursor: OutboxCursor = this.o.cursors.get(this.id) ?? { next: 0 }
    while (!this.signal.isStopped) {
      const batch = this.readBatch(cursor.next)
      if (!batch) {
        await this.signal.wait()
        continue
      }
      heldBytes += batch.bytes
      peakHeldBytes = Math.max(peakHeldBytes, heldBytes)
      let isSettled: boolean
      try {
        isSettled = await this.post(batch)
      } finally {
        heldBytes -= batch.bytes
      }
      if (!isSettled) return // stopped: the batch stays in the outbox
      cursor = { next: batch.next }
      await this.o.cursors.put(this.id, cursor)
      await trimDelivered(this.o.outbox, cursor.next)
    }
  }

  /** The next batch from `from` (synchronous: the LMDB iterator must not outlive the turn), or null when there is none. */
  private readBatch(from: number): Batch | null {
    const parts: string[] = []
    let bytes = 2
    let next = from
    for (const { sequence, event } of outboxEvents(this.o.outbox, from)) {
      const part = JSON.stringify(messageRecord(event))
      const size = Buffer.byteLength(part) + 1
      // a batch never exceeds MAX_BATCH_BYTES, unless one record alone does
      if (parts.length > 0 && bytes + size > MAX_BATCH_BYTES) break
      parts.push(part)
      bytes += size
      next = sequence + 1
      if (parts.length >= MAX_BATCH_RECORDS) break
    }
    if (parts.length === 0) return null
    return { body: `[${parts.join(',')}]`, bytes, records: parts.length, next }
  }

  /** Delivers or drops the batch (true), or gives up because the deliverer stops (false). */
  private async post(batch: Batch): Promise<boolean> {
    for (let attempt = 1; attempt <= 1000; attempt++) {
      const outcome = await postRecords(this.o.def, batch.body, this.signal.stopSignal, this.dispatcher, this.o.policy())
      if (outcome.isDelivered) return true
      if (this.signal.isStopped) return false
      if (!outcome.isRetryable || attempt >= this.o.def.maxDeliveryAttempts) {
        // never the URL: its query string may carry a key
        this.o.problem('webhook delivery failed; records dropped', {
          endpoint: this.o.def.name, partition: this.o.partition, records: batch.records, attempts: attempt, reason: outcome.reason,
        })
        return true
      }
      await this.signal.sleep(BACKOFF_MS[Math.min(attempt - 1, BACKOFF_MS.length - 1)]!)
      if (this.signal.isStopped) return false
    }
    return true
  }
}
