// Hyperhub's own control plane for the tier (Azure sets it through ARM, out of reach of SAS
// policies, so here only the owner may): read it, change it at run time (effective for the next
// operation), and read today's metering with each throttle's admitted, queued and refused counts.
import type { Route } from './http-server.js'
import { HubError } from './hub-error.js'
import type { HubThrottles } from '../throttle/hub-throttles.js'
import { TierError, type TierSetting } from '../throttle/tiers.js'

export function tierRoutes(throttles: HubThrottles): Route[] {
  return [
    {
      method: 'get', pattern: /^\/hyperhub\/tier\/?$/, right: 'ControlPlane',
      handle: () => ({ status: 200, body: throttles.limits }),
    },
    {
      method: 'put', pattern: /^\/hyperhub\/tier\/?$/, right: 'ControlPlane',
      handle: (req) => {
        const body = req.json<Partial<TierSetting>>()
        if (typeof body !== 'object' || body === null) throw new HubError(400004, 'the body must be {"tier": "S1", "units": 1, "overrides": {...}}')
        try {
          return { status: 200, body: throttles.setTier({ tier: body.tier!, units: body.units ?? 1, ...(body.overrides ? { overrides: body.overrides } : {}) }) }
        } catch (e) {
          if (e instanceof TierError) throw new HubError(400004, e.message)
          throw e
        }
      },
    },
    {
      method: 'get', pattern: /^\/hyperhub\/metering\/?$/, right: 'ServiceConnect', role: 'statistics/read',
      handle: () => ({ status: 200, body: throttles.report() }),
    },
  ]
}
