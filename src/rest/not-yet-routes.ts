// What the hub does not offer yet answers as Azure answers an operation a hub's tier does not offer
// (403 OperationNotAvailableInCurrentTier), naming the feature, rather than as "not found" (which the
// SDKs report as a missing device) or "unauthorized". No credential is needed to learn it.
import { HubError } from './hub-error.js'
import type { Route } from './http-server.js'

const NOT_YET: { pattern: RegExp; method: Route['method']; feature: string }[] = [
  // what has no home here yet
  { method: 'any', pattern: /^\/jobs(\/.*)?$/i, feature: 'jobs' },
]

export function notYetRoutes(): Route[] {
  return NOT_YET.map(({ method, pattern, feature }) => ({
    method, pattern, right: 'None',
    handle: () => { throw new HubError(403010, `${feature} is not supported by this hub yet (see "Not yet" in its README)`) },
  }))
}
