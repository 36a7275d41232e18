// Shared access policies on the control plane (in Azure: the IoT hub resource's
// `authorizationPolicies`, managed through ARM). Keys are shown here, so only the owner may call.
import type { PolicyRegistry } from '../auth/policy-registry.js'
import { policyJson } from '../auth/policy-registry.js'
import { HubError } from './hub-error.js'
import type { Route } from './http-server.js'

const POLICY = /^\/hyperhub\/policies\/([^/]+)\/?$/

export function policyRoutes(policies: PolicyRegistry): Route[] {
  return [
    {
      method: 'get', pattern: /^\/hyperhub\/policies\/?$/, right: 'ControlPlane',
      handle: () => ({ status: 200, body: { value: policies.list().map(policyJson) } }),
    },
    {
      method: 'get', pattern: POLICY, right: 'ControlPlane',
      handle(req) {
        const p = policies.get(req.params[0]!)
        if (!p) throw new HubError(404000, `shared access policy '${req.params[0]}' does not exist`)
        return { status: 200, body: policyJson(p) }
      },
    },
    {
      method: 'put', pattern: POLICY, right: 'ControlPlane',
      async handle(req) {
        const { policy, created } = await policies.put(req.params[0]!, req.json<Record<string, unknown>>() ?? {})
        return { status: created ? 201 : 200, body: policyJson(policy) }
      },
    },
    {
      method: 'post', pattern: /^\/hyperhub\/policies\/([^/]+)\/regenerateKey\/?$/, right: 'ControlPlane',
      async handle(req) {
        const body = req.json<{ keyType?: unknown } | null>()
        return { status: 200, body: policyJson(await policies.regenerate(req.params[0]!, body?.keyType)) }
      },
    },
    {
      method: 'delete', pattern: POLICY, right: 'ControlPlane',
      async handle(req) {
        await policies.delete(req.params[0]!)
        return { status: 204 }
      },
    },
  ]
}
