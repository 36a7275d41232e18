// Issue 11 items 1 and 5 and issue 17 item 3 on AMQP: every entity of the hub's AMQP table
// (AMQP_ENTITY_RIGHTS) allows exactly the credentials Azure allows, bearer tokens of each role included; a link closes when its token expires unless a new one was
// put on $cbs; the event stream closes when its token expires; a connection holds a bounded number
// of tokens.
import rhea from 'rhea'
import WebSocket from 'ws'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AMQP_ENTITY_RIGHTS } from '../src/amqp/amqp-server.js'
import { MAX_GRANTS_PER_CONNECTION } from '../src/amqp/cbs-auth.js'
import { DEVICE_LINK_RIGHTS } from '../src/amqp/device-addresses.js'
import { createSasToken } from '../src/auth/sas-token.js'
import { hasRight, type AccessPolicy } from '../src/auth/policies.js'
import { amqpConnect, next, putToken } from './helpers/amqp-client.js'
import { MqttTestClient } from './helpers/mqtt-test-client.js'
import { startTestHub, type TestHub } from './helpers/test-hub.js'
import { ensureLocalIssuerKey, signRoleToken } from '../src/auth/local-issuer.js'
import { ROLES, type AccessNeed, type RoleDefinition } from '../src/auth/roles.js'
import { roleMayDo } from './helpers/role-expectations.js'
import { partitionOf } from '../src/shard-protocol.js'

let t: TestHub
const conns: rhea.Connection[] = []
beforeAll(async () => {
  t = await startTestHub()
  const key = await ensureLocalIssuerKey(t.dataDir)
  for (const role of ROLES) roleTokens.push({ role, token: await signRoleToken(key, { roles: [role.name] }) })
})
afterAll(async () => {
  for (const c of conns) if (c.is_open()) c.close()
  await t.stop()
})

async function connection(): Promise<rhea.Connection> {
  const c = await amqpConnect(t.hub.ports.amqp!, t.ca)
  conns.push(c)
  return c
}

interface Credential { name: string; token: () => string | null; policy?: AccessPolicy; roles?: RoleDefinition[] }

/** What Azure requires of each entity: ServiceConnect, or a role with the data action; the Event Hubs endpoint takes SAS only. */
const EXPECTED_NEEDS: Record<keyof typeof AMQP_ENTITY_RIGHTS, AccessNeed> = {
  c2dSender: { right: 'ServiceConnect', role: 'cloudToDeviceMessages/send/action' },
  feedbackReceiver: { right: 'ServiceConnect', role: 'cloudToDeviceMessages/feedback/action' },
  fileNotificationReceiver: { right: 'ServiceConnect', role: 'fileUpload/notifications/action' },
  eventHubsPartitionReceiver: { right: 'ServiceConnect', role: 'sas-only' },
  management: { right: 'ServiceConnect', role: 'sas-only' },
}
const roleTokens: { role: RoleDefinition; token: string }[] = []

function credentials(): Credential[] {
  return [
    ...t.hub.policies.map((p) => ({ name: `policy ${p.keyName}`, token: () => t.serviceToken(p.keyName), policy: p })),
    { name: 'device token', token: () => t.deviceToken('amqp-rights-dev', t.hub.registry.get('amqp-rights-dev')!.authentication.symmetricKey.primaryKey!) },
    { name: 'another hub\'s token', token: () => createSasToken('otherhub.azure-devices.net', t.policyKey('iothubowner'), 'iothubowner') },
    { name: 'expired token', token: () => createSasToken('localhost', t.policyKey('iothubowner'), 'iothubowner', -400) },
    { name: 'malformed token', token: () => 'SharedAccessSignature sr=localhost&sig=%%%&se=x' },
    { name: 'no token', token: () => null },
    // as azure-iothub's token-credential clients put it: `Bearer <jwt>` for the scope
    ...roleTokens.map(({ role, token }) => ({ name: `bearer ${role.name}`, token: () => `Bearer ${token}`, roles: [role] })),
  ]
}

/** Whether a link to the address attaches (true), or the error condition it was closed with. */
async function attach(c: rhea.Connection, role: 'sender' | 'receiver', address: string): Promise<true | string> {
  const link = role === 'sender' ? c.open_sender({ target: { address } }) : c.open_receiver({ source: { address } })
  let refused: string | undefined
  link.once(role === 'sender' ? 'sender_close' : 'receiver_close', () => {
    refused = ((link as unknown as { remote: { detach?: { error?: rhea.AmqpError } } }).remote.detach?.error?.condition) ?? 'closed'
  })
  await Promise.race([next(link, role === 'sender' ? 'sender_open' : 'receiver_open'), next(link, role === 'sender' ? 'sender_close' : 'receiver_close')])
  // a marker: a link to nothing, refused after the first one's answer (the hub answers attaches in order)
  const marker = c.open_receiver({ source: { address: 'no-such-entity' } })
  await next(marker, 'receiver_close')
  if (refused === undefined) link.close()
  return refused ?? true
}

async function management(c: rhea.Connection): Promise<number> {
  const replyTo = `mgmt-${Math.random()}`
  const receiver = c.open_receiver({ source: { address: '$management' }, target: { address: replyTo } })
  const sender = c.open_sender({ target: { address: '$management' } })
  await Promise.all([next(receiver, 'receiver_open'), next(sender, 'sendable')])
  const reply = next(receiver, 'message')
  sender.send({ reply_to: replyTo, message_id: replyTo, application_properties: { operation: 'READ', name: t.hub.eventHubName, type: 'com.microsoft:eventhub' }, body: '' })
  return (await reply).message!.application_properties!['status-code'] as number
}

const PROBES: Record<keyof typeof AMQP_ENTITY_RIGHTS, (c: rhea.Connection) => Promise<true | string | number>> = {
  c2dSender: (c) => attach(c, 'sender', '/messages/devicebound'),
  feedbackReceiver: (c) => attach(c, 'receiver', '/messages/serviceBound/feedback'),
  fileNotificationReceiver: (c) => attach(c, 'receiver', '/messages/serviceBound/filenotifications'),
  eventHubsPartitionReceiver: (c) => attach(c, 'receiver', `${t.hub.eventHubName}/ConsumerGroups/$Default/Partitions/0`),
  management: (c) => management(c).then((status) => (status === 200 ? true : status)),
}

describe('AMQP entities', () => {
  it('every entity in the hub\'s table has a probe here', () => {
    expect(Object.keys(PROBES).sort()).toEqual(Object.keys(AMQP_ENTITY_RIGHTS).sort())
    expect(AMQP_ENTITY_RIGHTS).toEqual(EXPECTED_NEEDS)
  })

  it('allows and refuses every credential on every entity as Azure does', async () => {
    await t.createDevice('amqp-rights-dev')
    const wrong: string[] = []
    for (const c of credentials()) {
      const conn = await connection()
      const token = c.token()
      const put = token === null ? undefined : await putToken(conn, token, c.roles ? 'https://iothubs.azure.net/.default' : 'localhost')
      if (c.policy || c.roles) expect({ c: c.name, put }).toEqual({ c: c.name, put: 200 })
      else if (put !== undefined) expect({ c: c.name, put }).toEqual({ c: c.name, put: 401 })
      for (const [entity, need] of Object.entries(EXPECTED_NEEDS) as [keyof typeof AMQP_ENTITY_RIGHTS, AccessNeed][]) {
        const outcome = await PROBES[entity](conn)
        const ok = c.policy !== undefined ? hasRight(c.policy, need.right) : c.roles !== undefined && roleMayDo(c.roles[0]!.name, need.role)
        const refusal = entity === 'management' ? 401 : 'amqp:unauthorized-access'
        if (ok ? outcome !== true : outcome !== refusal) wrong.push(`${entity} with ${c.name}: ${String(outcome)}`)
      }
      conn.close()
    }
    expect(wrong).toEqual([])
  }, 60_000)
})

const DEVICE_PROBES: Record<keyof typeof DEVICE_LINK_RIGHTS, { role: 'sender' | 'receiver'; path: string }> = {
  'telemetry': { role: 'sender', path: '/messages/events' },
  'c2d': { role: 'receiver', path: '/messages/devicebound' },
  'twin-requests': { role: 'sender', path: '/twin' },
  'twin-answers': { role: 'receiver', path: '/twin' },
  'method-answers': { role: 'sender', path: '/methods/devicebound' },
  'method-requests': { role: 'receiver', path: '/methods/devicebound' },
}

describe('AMQP device links', () => {
  it('every device link in the hub\'s table has a probe here', () => {
    expect(Object.keys(DEVICE_PROBES).sort()).toEqual(Object.keys(DEVICE_LINK_RIGHTS).sort())
  })

  it('allows every device link to exactly the credentials that carry DeviceConnect for that device', async () => {
    const deviceId = 'amqp-rights-links'
    const { primaryKey } = await t.createDevice(deviceId)
    const other = await t.createDevice('amqp-rights-other')
    const deviceAudience = (id: string) => encodeURIComponent(`localhost/devices/${id}`)
    const cases: { name: string; put: (c: rhea.Connection) => Promise<number | undefined>; allowed: boolean }[] = [
      ...t.hub.policies.map((p) => ({ name: `policy ${p.keyName}`, put: (c: rhea.Connection) => putToken(c, t.serviceToken(p.keyName), 'localhost'), allowed: hasRight(p, 'DeviceConnect') })),
      { name: 'the device\'s token', put: (c) => putToken(c, t.deviceToken(deviceId, primaryKey), deviceAudience(deviceId)), allowed: true },
      { name: 'another device\'s token', put: (c) => putToken(c, t.deviceToken('amqp-rights-other', other.primaryKey), deviceAudience('amqp-rights-other')), allowed: false },
      { name: 'the device\'s token under another device\'s name', put: (c) => putToken(c, t.deviceToken(deviceId, primaryKey), deviceAudience('amqp-rights-other')), allowed: false },
      { name: 'another hub\'s token', put: (c) => putToken(c, createSasToken(`otherhub.azure-devices.net/devices/${deviceId}`, primaryKey), encodeURIComponent(`otherhub.azure-devices.net/devices/${deviceId}`)), allowed: false },
      { name: 'expired token', put: (c) => putToken(c, t.deviceToken(deviceId, primaryKey, -400), deviceAudience(deviceId)), allowed: false },
      { name: 'malformed token', put: (c) => putToken(c, 'SharedAccessSignature sr=localhost&sig=%%%&se=x', deviceAudience(deviceId)), allowed: false },
      { name: 'no token', put: async () => undefined, allowed: false },
    ]
    const wrong: string[] = []
    for (const c of cases) {
      const conn = await connection()
      await c.put(conn)
      for (const [kind, probe] of Object.entries(DEVICE_PROBES)) {
        const outcome = await attach(conn, probe.role, `/devices/${deviceId}${probe.path}`)
        if (c.allowed ? outcome !== true : outcome !== 'amqp:unauthorized-access') wrong.push(`${kind} with ${c.name}: ${String(outcome)}`)
      }
      conn.close()
      await next(conn, 'connection_close')
    }
    expect(wrong).toEqual([])
  }, 60_000)
})

describe('token expiry', () => {
  it('closes an Event Hubs receiver when its token expires, and keeps one whose token was renewed on $cbs', async () => {
    const { primaryKey } = await t.createDevice('expiry-dev')
    const p = partitionOf('expiry-dev', 4)
    const address = `${t.hub.eventHubName}/ConsumerGroups/$Default/Partitions/${p}`
    // valid for about 2 more seconds (Azure's 5 minutes of skew included)
    const shortLived = () => createSasToken('localhost', t.policyKey('service'), 'service', -298)
    const lapsing = await connection()
    expect(await putToken(lapsing, shortLived(), 'localhost')).toBe(200)
    const dying = lapsing.open_receiver({ source: { address, filter: { 'apache.org:selector-filter:string': rhea.filter.selector("amqp.annotation.x-opt-offset > '@latest'")['apache.org:selector-filter:string'] } } })
    await next(dying, 'receiver_open')
    const renewed = await connection()
    expect(await putToken(renewed, shortLived(), 'localhost')).toBe(200)
    const living = renewed.open_receiver({ source: { address } })
    await next(living, 'receiver_open')
    expect(await putToken(renewed, t.serviceToken('service'), 'localhost')).toBe(200)

    const closed = await next(dying, 'receiver_close')
    expect((closed.receiver as unknown as { remote: { detach: { error: rhea.AmqpError } } }).remote.detach.error.condition).toBe('amqp:unauthorized-access')
    // a marker after the first token's expiry: the renewed link is still there to receive it
    const got = new Promise<rhea.Message>((resolve) => living.on('message', (ctx: rhea.EventContext) => {
      if (ctx.message!.message_id === 'after-expiry') resolve(ctx.message!)
    }))
    const { client } = await MqttTestClient.connect({ port: t.hub.ports.mqttTcp!, clientId: 'expiry-dev', password: t.deviceToken('expiry-dev', primaryKey) })
    await client.publish('devices/expiry-dev/messages/events/%24.mid=after-expiry', 'x', 1)
    await client.disconnect()
    expect((await got).message_id).toBe('after-expiry')
    expect(living.is_open()).toBe(true)
  }, 20_000)

  it('closes the event stream when its token expires', async () => {
    const token = createSasToken('localhost', t.policyKey('service'), 'service', -298)
    const ws = new WebSocket(`wss://localhost:${t.hub.ports.https}/messages/events/stream`, { ca: t.ca, headers: { Authorization: token } })
    const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })))
    expect(await closed).toEqual({ code: 1008, reason: 'SAS token expired' })
  }, 20_000)

  it(`holds at most ${MAX_GRANTS_PER_CONNECTION} tokens on one connection (a renewal replaces its audience's)`, async () => {
    const conn = await connection()
    for (let i = 0; i < MAX_GRANTS_PER_CONNECTION; i++) expect(await putToken(conn, t.serviceToken('service'), `localhost/messages/n${i}`)).toBe(200)
    expect(await putToken(conn, t.serviceToken('service'), 'localhost/messages/n0')).toBe(200)
    const replyTo = 'cbs-over'
    const receiver = conn.open_receiver({ source: { address: '$cbs' }, target: { address: replyTo } })
    const sender = conn.open_sender({ target: { address: '$cbs' } })
    await Promise.all([next(receiver, 'receiver_open'), next(sender, 'sendable')])
    const reply = next(receiver, 'message')
    sender.send({ reply_to: replyTo, message_id: replyTo, application_properties: { operation: 'put-token', type: 'servicebus.windows.net:sastoken', name: 'localhost/messages/one-more' }, body: t.serviceToken('service') })
    const r = (await reply).message!.application_properties!
    expect({ status: r['status-code'], description: r['status-description'] }).toEqual({ status: 401, description: `Unauthorized: a connection holds at most ${MAX_GRANTS_PER_CONNECTION} tokens` })
    // a bearer token past the bound is refused the same way, and the connection stays
    const bearer = next(receiver, 'message')
    sender.send({ reply_to: replyTo, message_id: 'bearer-over', application_properties: { operation: 'put-token', type: 'jwt', name: 'https://iothubs.azure.net/.default' }, body: `Bearer ${roleTokens[0]!.token}` })
    const b = (await bearer).message!.application_properties!
    expect({ status: b['status-code'], description: b['status-description'], open: conn.is_open() }).toEqual({ status: 401, description: `Unauthorized: a connection holds at most ${MAX_GRANTS_PER_CONNECTION} tokens`, open: true })
  })
})
