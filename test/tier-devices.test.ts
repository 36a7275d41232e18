// Issue 14 at the device edge, with a clock the test moves (so no refill happens behind its back):
// the D2C throttle's burst, queue and overflow over MQTT (the connection closes, as Azure does) and
// AMQP (the message is rejected with com.microsoft:device-container-throttled), the new-connection
// throttle (queued CONNACKs, then CONNACK 3), and the daily quota (403002) on telemetry.
import rhea from 'rhea'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { ManualClock } from '../src/throttle/clock.js'
import { MqttTestClient } from './helpers/mqtt-test-client.js'
import { amqpConnect, next, putToken } from './helpers/amqp-client.js'
import { eventsOf, readAllEvents } from './helpers/events.js'
import { startTestHub, type TestHub } from './helpers/test-hub.js'

const clock = new ManualClock()
let t: TestHub
const keys = new Map<string, string>()
beforeAll(async () => {
  t = await startTestHub({}, { throttleClock: { clock, shaping: { burstSeconds: 1, backlogSeconds: 1 } } })
  for (const id of ['d2c-mqtt', 'd2c-amqp', 'quota-mqtt', 'quota-amqp', ...Array.from({ length: 5 }, (_, i) => `conn-${i}`)]) keys.set(id, (await t.createDevice(id)).primaryKey)
})
afterAll(() => t.stop())
beforeEach(() => { clock.advance(3_600_000) }) // every test starts with full buckets

const setTier = async (body: unknown) => expect((await t.rest('PUT', '/hyperhub/tier', { body })).status).toBe(200)
const mqtt = (id: string) => MqttTestClient.connect({ port: t.hub.ports.mqttTcp!, clientId: id, password: t.deviceToken(id, keys.get(id)!) })

describe('D2C throttle', () => {
  it('MQTT: the burst and the queue are acknowledged, then the connection is closed; nothing refused is stored', async () => {
    await setTier({ tier: 'S1', units: 1, overrides: { d2c: 5 } })
    const { client } = await mqtt('d2c-mqtt')
    const acked: number[] = []
    for (let i = 0; i < 10; i++) {
      await client.publish(`devices/d2c-mqtt/messages/events/%24.mid=m${i}`, 'x', 1)
      acked.push(i)
    }
    // burst 5 (1 s of the limit) and backlog 5: the 11th overflows
    client.publish('devices/d2c-mqtt/messages/events/%24.mid=m10', 'x', 1).catch(() => {})
    await client.closed
    expect(acked).toHaveLength(10)
    expect(eventsOf(await readAllEvents(t), 'd2c-mqtt').map((e) => e.systemProperties['message-id'])).toEqual(acked.map((i) => `m${i}`))
    const report = (await t.rest('GET', '/hyperhub/metering')).body
    expect(report.throttles.d2c).toMatchObject({ perSecond: 5, admitted: 5, queued: 5, refused: 1 }) // the first test on this throttle
  })

  it('AMQP: the message past the backlog is rejected with device-container-throttled; the link stays', async () => {
    await setTier({ tier: 'S1', units: 1, overrides: { d2c: 5 } })
    const audience = encodeURIComponent('localhost/devices/d2c-amqp')
    const conn = await amqpConnect(t.hub.ports.amqp!, t.ca)
    expect(await putToken(conn, t.deviceToken('d2c-amqp', keys.get('d2c-amqp')!), audience)).toBe(200)
    const sender = conn.open_sender({ target: { address: '/devices/d2c-amqp/messages/events' } })
    await next(sender, 'sendable')
    const outcomes: string[] = []
    for (let i = 0; i < 11; i++) {
      const delivery = sender.send({ message_id: `a${i}`, body: 'x' })
      outcomes.push(await new Promise<string>((resolve) => {
        const on = (kind: string) => (ctx: rhea.EventContext) => {
          if (ctx.delivery !== delivery) return
          resolve(kind === 'accepted' ? kind : `${kind} ${(ctx.delivery!.remote_state as { error?: rhea.AmqpError }).error?.condition}`)
        }
        sender.once('accepted', on('accepted'))
        sender.once('rejected', on('rejected'))
      }))
    }
    expect(outcomes).toEqual([...Array(10).fill('accepted'), 'rejected com.microsoft:device-container-throttled'])
    expect(sender.is_open()).toBe(true)
    conn.close()
  })

  it('an unlimited tier throttles nothing', async () => {
    await setTier({ tier: 'unlimited' })
    const { client } = await mqtt('d2c-mqtt')
    for (let i = 0; i < 30; i++) await client.publish(`devices/d2c-mqtt/messages/events/%24.mid=u${i}`, 'x', 1)
    await client.disconnect()
  })
})

describe('new-connection throttle', () => {
  it('queues CONNACKs past the burst, then refuses with CONNACK 3', async () => {
    await setTier({ tier: 'S1', units: 1, overrides: { connections: 2 } })
    const before = (await t.rest('GET', '/hyperhub/metering')).body.throttles.connections
    const codes: number[] = []
    const clients: MqttTestClient[] = []
    for (let i = 0; i < 5; i++) {
      const { client, connack } = await mqtt(`conn-${i}`)
      codes.push(connack.returnCode!)
      clients.push(client)
    }
    expect(codes).toEqual([0, 0, 0, 0, 3])
    for (const c of clients) c.destroy()
    const after = (await t.rest('GET', '/hyperhub/metering')).body.throttles.connections
    expect({ perSecond: after.perSecond, admitted: after.admitted - before.admitted, queued: after.queued - before.queued, refused: after.refused - before.refused })
      .toEqual({ perSecond: 2, admitted: 2, queued: 2, refused: 1 })
  })
})

describe('daily quota on telemetry', () => {
  it('past the quota MQTT telemetry closes the connection and AMQP telemetry is rejected, until midnight UTC', async () => {
    await setTier({ tier: 'F1', units: 1 })
    clock.set(Date.UTC(2026, 11, 5, 23, 0))
    const meter = t.hub.throttles.meter
    meter.bill('d2c', 8000 - meter.snapshot().used)
    const { client } = await mqtt('quota-mqtt')
    client.publish('devices/quota-mqtt/messages/events/%24.mid=over', 'x', 1).catch(() => {})
    await client.closed
    const audience = encodeURIComponent('localhost/devices/quota-amqp')
    const conn = await amqpConnect(t.hub.ports.amqp!, t.ca)
    expect(await putToken(conn, t.deviceToken('quota-amqp', keys.get('quota-amqp')!), audience)).toBe(200)
    const sender = conn.open_sender({ target: { address: '/devices/quota-amqp/messages/events' } })
    await next(sender, 'sendable')
    sender.send({ message_id: 'over', body: 'x' })
    const rejected = await next(sender, 'rejected')
    expect((rejected.delivery!.remote_state as { error?: rhea.AmqpError }).error).toMatchObject({ condition: 'amqp:resource-limit-exceeded' })
    clock.set(Date.UTC(2026, 11, 6, 0, 0, 1))
    sender.send({ message_id: 'next-day', body: 'x' })
    await next(sender, 'accepted')
    conn.close()
    expect(eventsOf(await readAllEvents(t), 'quota-amqp').map((e) => e.systemProperties['message-id'])).toEqual(['next-day'])
    expect(eventsOf(await readAllEvents(t), 'quota-mqtt')).toEqual([])
    await setTier({ tier: 'unlimited' })
  })
})
