// Issue 11 item 1 and issue 17 item 3: every route's rights, proven from the route table itself. For each REST route the
// hub registers (hub.routes, not a copied list) and for the event stream, every default policy, a
// device token, a token for another hub, an expired token, a malformed one, none, and a bearer token
// for each of Azure's IoT Hub roles and ARM's Owner and Contributor: allowed exactly
// when Azure's rules allow it, refused with Azure's 401 body otherwise. A route without an
// expectation here fails the test, so a route added later cannot escape it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { createSasToken } from '../src/auth/sas-token.js'
import { hasRight, type AccessPolicy, type Permission } from '../src/auth/policies.js'
import { startTestHub, type TestHub } from './helpers/test-hub.js'
import { ensureLocalIssuerKey, signRoleToken } from '../src/auth/local-issuer.js'
import { ROLES, type RoleDefinition, type RoleNeed } from '../src/auth/roles.js'
import { roleMayDo } from './helpers/role-expectations.js'

let t: TestHub
let moduleKeyOfM1 = ''
beforeAll(async () => {
  t = await startTestHub()
  await t.createDevice('rm-dev')
  moduleKeyOfM1 = (await t.rest('PUT', '/devices/rm-dev/modules/m1?api-version=2021-04-12', { body: {} })).body.authentication.symmetricKey.primaryKey
  // a log endpoint, so its read API has something to answer for
  await t.rest('PUT', '/routing/endpoints/logs/rmlog', { body: {} })
  const key = await ensureLocalIssuerKey(t.dataDir)
  for (const role of ROLES) roleTokens.push({ role, token: await signRoleToken(key, { roles: [role.name] }) })
})
afterAll(async () => { await t.stop() })

/** What Azure requires for each operation (auth.md "What rights allow"); ControlPlane: hub configuration, owner only. */
type Needs = Permission | 'Anyone' | 'Device' | 'Module'

/** What Azure requires for each operation (auth.md "What rights allow"); ControlPlane: hub configuration, owner only; None: a feature not here yet says so to anyone. */
interface Row { method: string; path: string; needs: Needs; role?: RoleNeed }
const EXPECTED: Row[] = [
  { method: 'get', path: '/devices', needs: 'RegistryRead', role: 'devices/read' },
  { method: 'get', path: '/devices/rm-dev', needs: 'RegistryRead', role: 'devices/read' },
  { method: 'put', path: '/devices/rm-new', needs: 'RegistryWrite', role: 'devices/write' },
  { method: 'delete', path: '/devices/rm-nobody', needs: 'RegistryWrite', role: 'devices/delete' },
  { method: 'get', path: '/statistics/devices', needs: 'RegistryRead', role: 'statistics/read' },
  { method: 'get', path: '/statistics/service', needs: 'ServiceConnect', role: 'statistics/read' },
  { method: 'get', path: '/twins/rm-dev', needs: 'ServiceConnect', role: 'twins/read' },
  { method: 'patch', path: '/twins/rm-dev', needs: 'ServiceConnect', role: 'twins/write' },
  { method: 'put', path: '/twins/rm-dev', needs: 'ServiceConnect', role: 'twins/write' },
  { method: 'post', path: '/twins/rm-dev/methods', needs: 'ServiceConnect', role: 'directMethods/invoke/action' },
  { method: 'post', path: '/devices/rm-dev/messages/devicebound', needs: 'ServiceConnect', role: 'cloudToDeviceMessages/send/action' },
  { method: 'delete', path: '/devices/rm-dev/commands', needs: 'ServiceConnect', role: 'cloudToDeviceMessages/queue/purge/action' },
  { method: 'get', path: '/messages/servicebound/feedback', needs: 'ServiceConnect', role: 'cloudToDeviceMessages/feedback/action' },
  { method: 'delete', path: '/messages/servicebound/feedback/no-such-lock', needs: 'ServiceConnect', role: 'cloudToDeviceMessages/feedback/action' },
  { method: 'post', path: '/messages/servicebound/feedback/no-such-lock/abandon', needs: 'ServiceConnect', role: 'cloudToDeviceMessages/feedback/action' },
  { method: 'post', path: '/devices/query', needs: 'ServiceConnect', role: 'twins/read' },
  { method: 'get', path: '/hyperhub/tier', needs: 'ControlPlane' },
  { method: 'put', path: '/hyperhub/tier', needs: 'ControlPlane' },
  { method: 'get', path: '/hyperhub/metering', needs: 'ServiceConnect', role: 'statistics/read' },
  { method: 'get', path: '/metrics', needs: 'ServiceConnect', role: 'statistics/read' },
  { method: 'post', path: '/hyperhub/faults', needs: 'ControlPlane' },
  { method: 'get', path: '/hyperhub/faults', needs: 'ControlPlane' },
  { method: 'delete', path: '/hyperhub/faults/999', needs: 'ControlPlane' },
  // probes say only whether the hub serves: open to anyone, as a load balancer's are
  { method: 'get', path: '/health', needs: 'Anyone' },
  { method: 'get', path: '/ready', needs: 'Anyone' },
  // the dashboard's static files carry no secrets: the browser signs its API calls itself
  { method: 'get', path: '/dashboard', needs: 'Anyone' },
  { method: 'get', path: '/dashboard/', needs: 'Anyone' },
  ...['/messages/events', '/messages/endpoints/rmlog'].flatMap((base): Row[] => [
    { method: 'get', path: `${base}/partitions`, needs: 'ServiceConnect', role: 'sas-only' },
    { method: 'get', path: `${base}/partitions/0`, needs: 'ServiceConnect', role: 'sas-only' },
    { method: 'get', path: `${base}/partitions/0/events`, needs: 'ServiceConnect', role: 'sas-only' },
    { method: 'get', path: `${base}/consumergroups`, needs: 'ServiceConnect', role: 'sas-only' },
    { method: 'put', path: `${base}/consumergroups/bad%20name`, needs: 'ControlPlane' },
    { method: 'delete', path: `${base}/consumergroups/nosuchgroup`, needs: 'ControlPlane' },
    { method: 'get', path: `${base}/consumergroups/$Default/partitions/0/checkpoint`, needs: 'ServiceConnect', role: 'sas-only' },
    { method: 'put', path: `${base}/consumergroups/$Default/partitions/0/checkpoint`, needs: 'ServiceConnect', role: 'sas-only' },
  ]),
  { method: 'get', path: '/routing', needs: 'ControlPlane' },
  { method: 'put', path: '/routing', needs: 'ControlPlane' },
  { method: 'get', path: '/routing/routes', needs: 'ControlPlane' },
  { method: 'get', path: '/routing/routes/nosuchroute', needs: 'ControlPlane' },
  { method: 'put', path: '/routing/routes/rm-route', needs: 'ControlPlane' },
  { method: 'delete', path: '/routing/routes/nosuchroute', needs: 'ControlPlane' },
  // ARM's route test APIs: nothing is routed, but a condition is hub configuration
  { method: 'post', path: '/routing/routes/$testnew', needs: 'ControlPlane' },
  { method: 'post', path: '/routing/routes/$testall', needs: 'ControlPlane' },
  { method: 'get', path: '/routing/fallbackRoute', needs: 'ControlPlane' },
  { method: 'put', path: '/routing/fallbackRoute', needs: 'ControlPlane' },
  { method: 'get', path: '/routing/endpoints', needs: 'ControlPlane' },
  { method: 'get', path: '/routing/endpoints/logs/nosuchendpoint', needs: 'ControlPlane' },
  { method: 'put', path: '/routing/endpoints/logs/rm-endpoint', needs: 'ControlPlane' },
  { method: 'delete', path: '/routing/endpoints/logs/nosuchendpoint', needs: 'ControlPlane' },
  { method: 'get', path: '/routing/enrichments', needs: 'ControlPlane' },
  { method: 'get', path: '/routing/enrichments/nosuchkey', needs: 'ControlPlane' },
  { method: 'put', path: '/routing/enrichments/rm-key', needs: 'ControlPlane' },
  { method: 'delete', path: '/routing/enrichments/nosuchkey', needs: 'ControlPlane' },
  // a device's own path: its token, or a DeviceConnect policy's
  { method: 'post', path: '/devices/rm-dev/messages/events', needs: 'Device' },
  { method: 'get', path: '/devices/rm-dev/messages/devicebound', needs: 'Device' },
  { method: 'delete', path: '/devices/rm-dev/messages/devicebound/0f8fad5b-d9cb-469f-a165-70867728950e', needs: 'Device' },
  { method: 'post', path: '/devices/rm-dev/messages/devicebound/0f8fad5b-d9cb-469f-a165-70867728950e/abandon', needs: 'Device' },
  { method: 'post', path: '/devices/rm-dev/files', needs: 'Device' },
  { method: 'post', path: '/devices/rm-dev/files/notifications', needs: 'Device' },
  { method: 'post', path: '/devices/rm-dev/files/notifications/some-correlation-id', needs: 'Device' },
  { method: 'get', path: '/messages/servicebound/filenotifications', needs: 'ServiceConnect', role: 'fileUpload/notifications/action' },
  { method: 'delete', path: '/messages/servicebound/filenotifications/no-such-lock', needs: 'ServiceConnect', role: 'fileUpload/notifications/action' },
  { method: 'post', path: '/messages/servicebound/filenotifications/no-such-lock/abandon', needs: 'ServiceConnect', role: 'fileUpload/notifications/action' },
  { method: 'get', path: '/devices/rm-dev/modules', needs: 'RegistryRead', role: 'devices/read' },
  { method: 'get', path: '/devices/rm-dev/modules/m1', needs: 'RegistryRead', role: 'devices/read' },
  { method: 'put', path: '/devices/rm-dev/modules/m-new', needs: 'RegistryWrite', role: 'devices/write' },
  { method: 'delete', path: '/devices/rm-dev/modules/m-nobody', needs: 'RegistryWrite', role: 'devices/delete' },
  { method: 'post', path: '/devices/rm-dev/modules/m1/messages/events', needs: 'Module' },
  { method: 'get', path: '/twins/rm-dev/modules/m1', needs: 'ServiceConnect', role: 'twins/read' },
  { method: 'patch', path: '/twins/rm-dev/modules/m1', needs: 'ServiceConnect', role: 'twins/write' },
  { method: 'put', path: '/twins/rm-dev/modules/m1', needs: 'ServiceConnect', role: 'twins/write' },
  { method: 'post', path: '/twins/rm-dev/modules/m1/methods', needs: 'ServiceConnect', role: 'directMethods/invoke/action' },
  { method: 'put', path: '/configurations/rm-cfg', needs: 'RegistryWrite', role: 'configurations/write' },
  { method: 'get', path: '/configurations/rm-cfg', needs: 'RegistryRead', role: 'configurations/read' },
  { method: 'delete', path: '/configurations/rm-cfg-nobody', needs: 'RegistryWrite', role: 'configurations/delete' },
  { method: 'get', path: '/configurations', needs: 'RegistryRead', role: 'configurations/read' },
  { method: 'post', path: '/configurations/testQueries', needs: 'RegistryRead', role: 'configurations/testQueries/action' },
  { method: 'post', path: '/devices/rm-dev/applyConfigurationContent', needs: 'RegistryWrite', role: 'configurations/applyToEdgeDevice/action' },
  { method: 'get', path: '/digitaltwins/rm-dev', needs: 'ServiceConnect', role: 'twins/read' },
  { method: 'patch', path: '/digitaltwins/rm-dev', needs: 'ServiceConnect', role: 'twins/write' },
  { method: 'post', path: '/digitaltwins/rm-dev/commands/reboot', needs: 'ServiceConnect', role: 'directMethods/invoke/action' },
  { method: 'post', path: '/digitaltwins/rm-dev/components/c1/commands/reboot', needs: 'ServiceConnect', role: 'directMethods/invoke/action' },
  // shared access policies show keys: the owner's alone (issue 17)
  { method: 'get', path: '/hyperhub/policies', needs: 'ControlPlane' },
  { method: 'get', path: '/hyperhub/policies/nosuchpolicy', needs: 'ControlPlane' },
  { method: 'put', path: '/hyperhub/policies/rm-policy', needs: 'ControlPlane' },
  { method: 'post', path: '/hyperhub/policies/nosuchpolicy/regenerateKey', needs: 'ControlPlane' },
  { method: 'delete', path: '/hyperhub/policies/nosuchpolicy', needs: 'ControlPlane' },
  // CA certificates for CA-signed X.509 devices (issue 17)
  { method: 'get', path: '/hyperhub/certificates', needs: 'ControlPlane' },
  { method: 'get', path: '/hyperhub/certificates/nosuchcert', needs: 'ControlPlane' },
  { method: 'put', path: '/hyperhub/certificates/rm-cert', needs: 'ControlPlane' },
  { method: 'post', path: '/hyperhub/certificates/nosuchcert/generateVerificationCode', needs: 'ControlPlane' },
  { method: 'post', path: '/hyperhub/certificates/nosuchcert/verify', needs: 'ControlPlane' },
  { method: 'delete', path: '/hyperhub/certificates/nosuchcert', needs: 'ControlPlane' },
  // import and export jobs (v1): the create route checks RegistryRead; an import checks RegistryWrite on top (test/import-export.test.ts)
  { method: 'post', path: '/jobs/create', needs: 'RegistryRead', role: ['jobs/write', 'devices/read'] },
  { method: 'get', path: '/jobs', needs: 'RegistryRead', role: 'jobs/read' },
  { method: 'get', path: '/jobs/rm-ie-job', needs: 'RegistryRead', role: 'jobs/read' },
  { method: 'delete', path: '/jobs/rm-ie-job', needs: 'RegistryWrite', role: 'jobs/delete' },
  // scheduled jobs (issue 18)
  { method: 'get', path: '/jobs/v2/query', needs: 'ServiceConnect', role: 'jobs/read' },
  { method: 'put', path: '/jobs/v2/rm-job', needs: 'ServiceConnect', role: 'jobs/write' },
  { method: 'get', path: '/jobs/v2/rm-job', needs: 'ServiceConnect', role: 'jobs/read' },
  { method: 'post', path: '/jobs/v2/rm-job/cancel', needs: 'ServiceConnect', role: 'jobs/write' },
  // bulk registry operations (issue 18): both devices/write and devices/delete
  { method: 'post', path: '/devices', needs: 'RegistryWrite', role: ['devices/write', 'devices/delete'] },
]

interface Credential { name: string; token: () => string | null; policy?: () => AccessPolicy; roles?: RoleDefinition[] }

/** A bearer token for each of Azure's roles (and ARM's Owner), signed by the hub's local issuer. */
const roleTokens: { role: RoleDefinition; token: string }[] = []

function credentials(): Credential[] {
  const policy = (name: string) => () => t.hub.policies.find((p) => p.keyName === name)!
  return [
    ...t.hub.policies.map((p) => ({ name: `policy ${p.keyName}`, token: () => t.serviceToken(p.keyName), policy: policy(p.keyName) })),
    { name: 'device token', token: () => t.deviceToken('rm-dev', t.hub.registry.get('rm-dev')!.authentication.symmetricKey.primaryKey!) },
    { name: 'module token', token: () => createSasToken(encodeURIComponent('localhost/devices/rm-dev/modules/m1'), moduleKeyOfM1) },
    { name: 'another hub\'s token', token: () => createSasToken('otherhub.azure-devices.net', t.policyKey('iothubowner'), 'iothubowner') },
    { name: 'expired token', token: () => createSasToken('localhost', t.policyKey('iothubowner'), 'iothubowner', -400) },
    { name: 'malformed token', token: () => 'SharedAccessSignature sr=localhost&sig=%%%&se=x' },
    { name: 'no token', token: () => null },
    ...roleTokens.map(({ role, token }) => ({ name: `bearer ${role.name}`, token: () => `Bearer ${token}`, roles: [role] })),
  ]
}

/** Where a request that passed the rights check must not arrive: its answer is the handler's, never 401. */
function allowed(c: Credential, needs: Needs, role?: RoleNeed): boolean {
  if (c.roles) {
    if (needs === 'Anyone') return true
    if (needs === 'Device' || needs === 'Module') return false
    return roleMayDo(c.roles[0]!.name, needs === 'ControlPlane' ? 'control-plane' : role!)
  }
  if (needs === 'Device') return c.name === 'device token' || (c.policy !== undefined && hasRight(c.policy(), 'DeviceConnect'))
  if (needs === 'Module') return c.name === 'module token' || (c.policy !== undefined && hasRight(c.policy(), 'DeviceConnect'))
  return needs === 'Anyone' || (c.policy !== undefined && hasRight(c.policy(), needs))
}

describe('REST routes', () => {
  it('every registered route has an expectation, and every expectation names exactly one route', () => {
    const matching = (e: { method: string; path: string }) => t.hub.routes.filter((r) => r.method === e.method && r.pattern.test(e.path))
    for (const e of EXPECTED) expect({ ...e, routes: matching(e).length }).toEqual({ ...e, routes: 1 })
    const unexpected = t.hub.routes.filter((r) => !EXPECTED.some((e) => e.method === r.method && r.pattern.test(e.path)))
    expect(unexpected.map((r) => `${r.method} ${r.pattern}`)).toEqual([])
    // the route table says what it checks; it must be what Azure requires
    for (const e of EXPECTED) expect({ ...e, checks: matching(e)[0]!.right, role: matching(e)[0]!.role }).toEqual({ ...e, checks: e.needs })
  })

  it('allows and refuses every credential on every route as Azure does', async () => {
    const wrong: string[] = []
    for (const e of EXPECTED) {
      for (const c of credentials()) {
        // no body: a request that passes the check fails validation (400) or finds nothing (404), changing nothing
        const r = await t.rest(e.method.toUpperCase(), `${e.path}?api-version=2021-04-12`, { token: c.token() })
        if (allowed(c, e.needs, e.role)) {
          if (r.status === 401) wrong.push(`${e.method} ${e.path} refused ${c.name}`)
          continue
        }
        if (r.status !== 401 || r.headers['iothub-errorcode'] !== 'IotHubUnauthorized' || !/^ErrorCode:IotHubUnauthorized;/.test(r.body?.Message ?? '')) {
          wrong.push(`${e.method} ${e.path} let ${c.name} through (${r.status})`)
        }
      }
    }
    expect(wrong).toEqual([])
  }, 60_000)
})

describe('the event stream', () => {
  it('opens for ServiceConnect only, and refuses everyone else with the 401 body', async () => {
    const open = (token: string | null) => new Promise<{ status: number; code?: string }>((resolve) => {
      const ws = new WebSocket(`wss://localhost:${t.hub.ports.https}/messages/events/stream`, { ca: t.ca, headers: token ? { Authorization: token } : {} })
      ws.once('open', () => { ws.close(); resolve({ status: 101 }) })
      ws.once('unexpected-response', (_req, res) => resolve({ status: res.statusCode!, code: res.headers['iothub-errorcode'] as string }))
      ws.once('error', () => {})
    })
    for (const c of credentials()) {
      const r = await open(c.token())
      expect({ credential: c.name, ...r }).toEqual(allowed(c, 'ServiceConnect', 'sas-only')
        ? { credential: c.name, status: 101 } : { credential: c.name, status: 401, code: 'IotHubUnauthorized' })
    }
  })
})
