// JetStream answers nothing for a few seconds while its cluster elects a leader (a node died or came
// back): a request then times out, finds no responders or too few peers. Opening a stream or bucket
// waits that out, bounded; any other error (permissions, a configuration clash, data that is not
// ours) is the caller's at once.
import { JetStreamApiError } from '@nats-io/jetstream'

/** no suitable peers for placement (10005), JetStream temporarily unavailable (10008) */
const TRANSIENT_CODES = [10005, 10008]

export function transient(e: unknown): boolean {
  if (e instanceof JetStreamApiError) return e.status === 503 || TRANSIENT_CODES.includes(e.code)
  const err = e as Error
  return err?.name === 'TimeoutError' || err?.name === 'NoRespondersError' || /timeout|temporarily unavailable|no responders/i.test(err?.message ?? '')
}

export async function untilAvailable<T>(what: string, attempt: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      return await attempt()
    } catch (e) {
      if (!transient(e)) throw e
      if (Date.now() > deadline) throw new Error(`${what}: JetStream did not answer in ${timeoutMs} ms (${(e as Error).message})`, { cause: e })
      await new Promise((r) => setTimeout(r, 250))
    }
  }
}
