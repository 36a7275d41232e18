// One webhook POST and what became of it. Redirects are not followed (a 3xx could send telemetry to
// an address the endpoint's owner never named), and at most MAX_RESPONSE_BYTES of an answer are read
// before the response is cancelled: the status is all that matters. Reasons never carry the URL,
// whose query string may hold a key.
import { Agent, fetch, type Response } from 'undici'
import type { WebhookEndpointDef } from '../src/routing/routing-config.js'
import { configuredRefusal, guardedLookup, type DestinationPolicy } from '../src/routing/webhook-destination.js'

export const MAX_RESPONSE_BYTES = 64 * 1024

export type PostOutcome =
  | { isDelivered: true }
  | { isDelivered: false; isRetryable: boolean; reason: string }

/** Connections for one endpoint, each checked against the destination policy as it is made. */
export function webhookDispatcher(def: WebhookEndpointDef, policy: () => DestinationPolicy): Agent {
  return new Agent({ connect: { lookup: guardedLookup(new URL(def.url), policy) } })
}

export async function postRecords(def: WebhookEndpointDef, body: string, stop: AbortSignal, dispatcher: Agent, policy: DestinationPolicy): Promise<PostOutcome> {
  // a literal address never reaches the lookup: it is checked here
  const refused = configuredRefusal(def.url, policy)
  if (refused) return { isDelivered: false, isRetryable: false, reason: `destination refused: ${refused}` }
  // one controller a request, tied to the deliverer's stop and let go of after: AbortSignal.any with a
  // long-lived signal keeps every combined signal alive in Node 20 (~0.3 KB a request, for ever)
  const request = new AbortController()
  let timedOut = false
  const onStop = () => request.abort()
  stop.addEventListener('abort', onStop, { once: true })
  const timer = setTimeout(() => { timedOut = true; request.abort() }, def.timeoutInSeconds * 1000)
  const signal = request.signal
  let status: number
  try {
    const res = await fetch(def.url, {
      method: 'POST', body, redirect: 'manual', signal, dispatcher,
      headers: { 'content-type': 'application/json; charset=utf-8', 'x-hyperhub-endpoint': def.name },
    })
    status = res.status
    await discard(res)
  } catch (e) {
    const err = e as Error & { cause?: { code?: string; message?: string } }
    if (err.cause?.code === 'DESTINATION_REFUSED') return { isDelivered: false, isRetryable: false, reason: `destination refused: ${err.cause.message}` }
    // an error's message may quote the URL: only its code is kept
    const reason = timedOut ? 'timed out' : stop.aborted ? 'stopped' : err.cause?.code ?? 'request failed'
    return { isDelivered: false, isRetryable: true, reason }
  } finally {
    clearTimeout(timer)
    stop.removeEventListener('abort', onStop)
  }
  if (status >= 200 && status < 300) return { isDelivered: true }
  if (status >= 300 && status < 400) return { isDelivered: false, isRetryable: false, reason: `HTTP ${status} (redirects are not followed)` }
  return { isDelivered: false, isRetryable: status === 429 || status >= 500, reason: `HTTP ${status}` }
}

/** Reads a little of the answer (so a small one leaves the connection reusable), then lets go of the rest. */
async function discard(res: Response): Promise<void> {
  if (!res.body) return
  const reader = res.body.getReader()
  try {
    for (let read = 0; read < MAX_RESPONSE_BYTES;) {
      const chunk = await reader.read()
      if (chunk.done) return
      read += chunk.value.byteLength
    }
  } catch {
    // the status came; an answer cut short changes nothing
  } finally {
    await reader.cancel().catch(() => {})
  }
}
