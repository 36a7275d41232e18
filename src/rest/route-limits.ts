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

function bodyBytes(body: unknown): number {
  if (body === undefined) return 0
  return Buffer.byteLength(typeof body === 'string' ? body : JSON.stringify(body))
}

export function withTierLimits(route: Route & { limits?: RouteLimits }, throttles: HubThrottles): Route {
  const limits = route.limits
  if (!limits) return route
  return {
    ...route,
    async handle(req: RestRequest): Promise<RestResponse> {
      if (limits.standardOnly && throttles.limits.basic) {
        throw new HubError(403010, `${limits.standardOnly} is not available on tier ${throttles.limits.tier} (Basic tiers lack it)`)
      }
      if (limits.meter && throttles.meter.exhausted) throttles.bill(limits.meter.op, 0) // throws 403002
      if (limits.throttle) await throttles.admitRequest(limits.throttle, limits.cost?.(req) ?? 1)
      const res = await route.handle(req)
      if (limits.meter && res.status < 300) {
        const m = limits.meter
        const bytes = (m.bytes === 'response' ? 0 : req.body.length) + (m.bytes === 'request' ? 0 : bodyBytes(res.body))
        // the operation is done: an answer past the quota still goes out, the next one is refused
        try { throttles.bill(m.op, bytes) } catch (e) { if (!(e instanceof HubError)) throw e }
      }
      return res
    },
  }
}
