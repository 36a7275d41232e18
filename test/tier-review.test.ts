// Issue 14's review as an attacker and a slow reader, each finding held by a test: retained
// messages went around the D2C throttle; service C2D over AMQP and a device's own twin calls went
// around the tier; a method to an offline device was not billed; faults reached the operators'
// probes; waiting REST requests had no bound.
import rhea from 'rhea'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { ManualClock } from '../src/throttle/clock.js'
import { MAX_WAITING_REQUESTS } from '../src/rest/route-limits.js'
import { MqttTestClient } from './helpers/mqtt-test-client.js'
import { amqpConnect, next, putToken } from './helpers/amqp-client.js'
import { connectDevice, twinRequest, until } from './helpers/device-mqtt.js'
import { startTestHub, type TestHub } from './helpers/test-hub.js'

const clock = new ManualClock()
let t: TestHub
beforeAll(async () => { t = await startTestHub({}, { throttleClock: { clock, shaping: { burstSeconds: 1, backlogSeconds: 1 } } }) })
afterAll(() => t.stop())
beforeEach(async () => {
  clock.advance(3_600_000)
  expect((await t.rest('PUT', '/hyperhub/tier', { body: { tier: 'unlimited' } })).status).toBe(200)
  for (const f of (await t.rest('GET', '/hyperhub/faults')).body as { id: number }[]) await t.rest('DELETE', `/hyperhub/faults/${f.id}`)
})
const setTier = async (body: unknown) => expect((await t.rest('PUT', '/hyperhub/tier', { body })).status).toBe(200)

describe('issue 14 review findings', () => {
  it('retained messages count against the D2C throttle like any other', async () => {
    const { primaryKey } = await t.createDevice('tr-retain')
    await setTier({ tier: 'S1', units: 1, overrides: { d2c: 5 } })
    const { client } = await MqttTestClient.connect({ port: t.hub.ports.mqttTcp!, clientId: 'tr-retain', password: t.deviceToken('tr-retain', primaryKey) })
    let acked = 0
    for (let i = 0; i < 10; i++) { await client.publish('devices/tr-retain/messages/events/', 'x', 1, true); acked++ }
    client.publish('devices/tr-retain/messages/events/', 'x', 1, true).catch(() => {})
    await client.closed
    expect(acked).toBe(10)
  })

  it('service C2D over AMQP is refused on a Basic tier and throttled as REST sends are', async () => {
    await t.createDevice('tr-c2d')
    const conn = await amqpConnect(t.hub.ports.amqp!, t.ca)
    expect(await putToken(conn, t.serviceToken('service'), 'localhost')).toBe(200)
    const sender = conn.open_sender({ target: { address: '/messages/devicebound' } })
    await next(sender, 'sendable')
    const outcome = (id: string) => new Promise<string>((resolve) => {
      const d = sender.send({ to: '/devices/tr-c2d/messages/devicebound', message_id: id, body: 'x' })
      const on = (kind: string) => (ctx: rhea.EventContext) => { if (ctx.delivery === d) resolve(kind === 'accepted' ? kind : String((ctx.delivery!.remote_state as { error?: rhea.AmqpError }).error?.condition)) }
      sender.on('accepted', on('accepted'))
      sender.on('rejected', on('rejected'))
    })
    await setTier({ tier: 'B1', units: 1 })
    expect(await outcome('basic')).toBe('amqp:not-allowed')
    await setTier({ tier: 'S1', units: 1, overrides: { c2dSends: 1 } })
    const outcomes = []
    for (let i = 0; i < 3; i++) outcomes.push(await outcome(`s${i}`))
    expect(outcomes).toEqual(['accepted', 'accepted', 'com.microsoft:device-container-throttled'])
    conn.close()
  })

  it('a device\'s own twin GET and reported patch follow the tier: Basic 403, the twin throttles 429, the quota 403', async () => {
    const client = await connectDevice(t, 'tr-twin')
    await client.subscribe('$iothub/twin/res/#', 0)
    await setTier({ tier: 'B1', units: 1 })
    expect((await twinRequest(client, '$iothub/twin/GET/?$rid=b1', '', 'b1'))).toMatchObject({ status: 403, body: { errorCode: 403010 } })
    await setTier({ tier: 'S1', units: 1, overrides: { twinReads: 1, twinUpdates: 1 } })
    const gets = []
    for (let i = 0; i < 3; i++) gets.push((await twinRequest(client, `$iothub/twin/GET/?$rid=g${i}`, '', `g${i}`)).status)
    expect(gets).toEqual([200, 200, 429])
    const patches = []
    for (let i = 0; i < 3; i++) patches.push((await twinRequest(client, `$iothub/twin/PATCH/properties/reported/?$rid=p${i}`, `{"n":${i}}`, `p${i}`)).status)
    expect(patches).toEqual([204, 204, 429])
    await setTier({ tier: 'F1', units: 1 })
    t.hub.throttles.meter.bill('d2c', 8000)
    expect((await twinRequest(client, '$iothub/twin/GET/?$rid=q', '', 'q'))).toMatchObject({ status: 403, body: { errorCode: 403002 } })
    await client.disconnect()
  })

  it('a method to a device that is not online is billed as its request\'s chunks plus one', async () => {
    await t.createDevice('tr-offline')
    const before = (await t.rest('GET', '/hyperhub/metering')).body.quota.operations.methods
    const r = await t.rest('POST', '/twins/tr-offline/methods', { body: { methodName: 'm', payload: null, responseTimeoutInSeconds: 5 } })
    expect(r.status).toBe(404)
    const after = (await t.rest('GET', '/hyperhub/metering')).body.quota.operations.methods
    expect(after.messages - before.messages).toBe(2)
  })

  it('faults never reach /health, /ready or /metrics', async () => {
    expect((await t.rest('POST', '/hyperhub/faults', { body: { kind: 'server-busy', seconds: 60 } })).status).toBe(201)
    expect((await t.rest('GET', '/devices')).status).toBe(503)
    for (const path of ['/health', '/ready', '/metrics']) expect({ path, status: (await t.rest('GET', path)).status }).toEqual({ path, status: 200 })
  })

  it(`at most ${MAX_WAITING_REQUESTS} REST requests wait out an injected delay at once; the rest are refused at once with 503`, async () => {
    expect((await t.rest('POST', '/hyperhub/faults', { body: { kind: 'delay-acks', protocol: 'rest', delayMs: 1500, seconds: 60 } })).status).toBe(201)
    const statuses = await Promise.all(Array.from({ length: MAX_WAITING_REQUESTS + 20 }, () => t.rest('GET', '/statistics/devices').then((r) => r.status)))
    expect(statuses.filter((s) => s === 503)).toHaveLength(20)
    expect(statuses.filter((s) => s === 200)).toHaveLength(MAX_WAITING_REQUESTS)
  }, 30_000)

  it('a device disabled while its CONNACK waits for the connection throttle is refused, not connected', async () => {
    const first = await t.createDevice('tr-conn-a')
    const second = await t.createDevice('tr-conn-b')
    await setTier({ tier: 'S1', units: 1, overrides: { connections: 1 } })
    const a = await MqttTestClient.connect({ port: t.hub.ports.mqttTcp!, clientId: 'tr-conn-a', password: t.deviceToken('tr-conn-a', first.primaryKey) })
    expect(a.connack.returnCode).toBe(0)
    // the burst (1) is spent: this one waits a second for its turn
    // its outcome is taken at once: the refusal may come before the PUT below is answered
    const waiting = MqttTestClient.connect({ port: t.hub.ports.mqttTcp!, clientId: 'tr-conn-b', password: t.deviceToken('tr-conn-b', second.primaryKey) })
      .then(() => 'connected', (e: Error) => e.message)
    await until(() => (t.hub.throttles.report().throttles as Record<string, { queued: number }>).connections!.queued, (n) => n > 0)
    expect((await t.rest('PUT', '/devices/tr-conn-b', { body: { deviceId: 'tr-conn-b', status: 'disabled' }, headers: { 'If-Match': '*' } })).status).toBe(200)
    expect(await waiting).toBe('connection closed while waiting for connack')
    expect(t.hub.edge.connectionState('tr-conn-b').connected).toBe(false)
    a.client.destroy()
  })
})
