// The tier's rules around a REST route: a Basic tier refuses what Basic lacks (403010), a used-up
// daily quota refuses billable operations (403002), the route's throttle admits it (at once, after
// queueing, or 429002), and a served billable operation is metered by its payload.
import type { RestRequest, RestResponse, Route } from './http-server.js'
import { HubError } from './hub-error.js'
import type { HubThrottles } from '../throttle/hub-throttles.js'
import type { MeteredOperation } from '../throttle/daily-meter.js'
import type { ThrottleName } from '../throttle/tiers.js'

/** What a route costs under a tier. */
export interface RouteLimits {
  throttle?: ThrottleName
  /** the throttle's cost for this request (methods: 4 KB chunks of the request payload) */
  cost?: (req: RestRequest) => number
  /** billed on success: by the request's payload, the answer's, or both */
  meter?: { op: MeteredOperation; bytes: 'request' | 'response' | 'both' }
  /** a Standard-only feature (C2D, twins, methods): 403010 on Basic tiers */
  standardOnly?: string
}

/** A twin read or update, on a Standard-only feature named for the 403010 message. */
export const twinReadLimits = (feature: string): RouteLimits => ({ throttle: 'twinReads', meter: { op: 'twinReads', bytes: 'response' }, standardOnly: feature })
export const twinUpdateLimits = (feature: string): RouteLimits => ({ throttle: 'twinUpdates', meter: { op: 'twinUpdates', bytes: 'request' }, standardOnly: feature })
/** A direct method call: the methods throttle meters KB on a 4 KB meter, so a call of up to 4 KB costs 4. */
export const methodLimits = (feature: string): RouteLimits => ({
  throttle: 'methodKB', cost: (req) => 4 * Math.max(1, Math.ceil(req.body.length / 4096)), meter: { op: 'methods', bytes: 'both' }, standardOnly: feature,
})

function bodyBytes(body: unknown): number {
  if (body === undefined) return 0
  return Buffer.byteLength(typeof body === 'string' ? body : JSON.stringify(body))
}

/** The device a request is about, for faults injected for one device. */
function deviceOf(req: RestRequest): string | undefined {
  return /^\/(devices|twins)\/[^/]/i.test(req.path) && !/^\/devices\/query/i.test(req.path) ? req.params[0] : undefined
}

/**
 * Requests waiting (a queued throttle admission, a delay-acks fault) hold their bodies: at most this
 * many wait at once, hub-wide; past it a request that would wait is refused at once.
 */
export const MAX_WAITING_REQUESTS = 128
let waiting = 0

async function wait(ms: number, refusal: () => HubError): Promise<void> {
  if (waiting >= MAX_WAITING_REQUESTS) throw refusal()
  waiting++
  try { await new Promise((resolve) => setTimeout(resolve, ms)) } finally { waiting-- }
}

/** Never faulted: the control plane (so a hub-wide fault can be taken back), the operators' probes and the dashboard's files. */
const UNFAULTED = /^\/(hyperhub\/|health\/?$|ready\/?$|metrics\/?$|dashboard(\/|$))/

async function injectedFaults(req: RestRequest, throttles: HubThrottles): Promise<void> {
  if (!throttles.faults.active || UNFAULTED.test(req.path)) return
  const device = deviceOf(req)
  if (throttles.faults.find('throttle', 'rest', device)) throw new HubError(429001, 'throttled (a fault injected through /hyperhub/faults)')
  if (throttles.faults.find('server-busy', 'rest', device)) throw new HubError(503005, 'the hub is busy (a fault injected through /hyperhub/faults)')
  const delay = throttles.faults.find('delay-acks', 'rest', device)
  if (delay) await wait(delay.delayMs!, () => new HubError(503005, `more than ${MAX_WAITING_REQUESTS} requests are waiting out an injected delay`))
}

export function withTierLimits(route: Route & { limits?: RouteLimits }, throttles: HubThrottles): Route {
  const limits = route.limits ?? {}
  return {
    ...route,
    async handle(req: RestRequest): Promise<RestResponse> {
      await injectedFaults(req, throttles)
      if (limits.standardOnly && throttles.limits.basic) {
        throw new HubError(403010, `${limits.standardOnly} is not available on tier ${throttles.limits.tier} (Basic tiers lack it)`)
      }
      if (limits.meter && throttles.meter.exhausted) throttles.bill(limits.meter.op, 0) // throws 403002
      if (limits.throttle) {
        const name = limits.throttle
        const a = throttles.admit(name, limits.cost?.(req) ?? 1)
        const backlogFull = () => new HubError(429002, `the ${name} throttle's backlog is full: more than ${throttles.limits.throttles[name]}/s on tier ${throttles.limits.tier}; retry later`)
        if (a.kind === 'refused') throw backlogFull()
        if (a.kind === 'queued') await throttles.wait(a.waitMs, () => wait(a.waitMs, backlogFull))
      }
      let res: RestResponse
      try {
        res = await route.handle(req)
      } catch (e) {
        // a method for a device that is not online is billed as its request's chunks plus one
        if (limits.meter?.op === 'methods' && e instanceof HubError && e.code === 404103) {
          try { throttles.bill('methods', 0, throttles.meter.chunks(req.body.length) + 1) } catch (b) { if (!(b instanceof HubError)) throw b }
        }
        throw e
      }
      if (limits.meter && res.status < 300) {
        const m = limits.meter
        const meter = throttles.meter
        // a method is billed as its request's chunks plus its answer's, each at least one
        const chunks = (m.bytes === 'response' ? 0 : meter.chunks(req.body.length)) + (m.bytes === 'request' ? 0 : meter.chunks(bodyBytes(res.body)))
        // the operation is done: an answer past the quota still goes out, the next one is refused
        try { throttles.bill(m.op, 0, chunks) } catch (e) { if (!(e instanceof HubError)) throw e }
      }
      return res
    },
  }
}
