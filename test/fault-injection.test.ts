// Issue 14 item 5: faults injected through the control plane reach exactly what they name, answer
// as Azure does when unhealthy, and end on time (a clock the test moves): a throttle for one device
// over MQTT, server busy for REST, dropped and refused connections, delayed acknowledgements.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ManualClock } from '../src/throttle/clock.js'
import { MqttTestClient } from './helpers/mqtt-test-client.js'
import { amqpConnect, next, putToken } from './helpers/amqp-client.js'
import { startTestHub, type TestHub } from './helpers/test-hub.js'
import { until } from './helpers/device-mqtt.js'

const clock = new ManualClock()
let t: TestHub
const keys = new Map<string, string>()
beforeAll(async () => {
  t = await startTestHub({}, { throttleClock: { clock } })
  for (const id of ['fi-a', 'fi-b', 'fi-amqp']) keys.set(id, (await t.createDevice(id)).primaryKey)
})
afterAll(() => t.stop())

const mqtt = (id: string) => MqttTestClient.connect({ port: t.hub.ports.mqttTcp!, clientId: id, password: t.deviceToken(id, keys.get(id)!) })
const inject = async (body: unknown) => {
  const r = await t.rest('POST', '/hyperhub/faults', { body })
  expect(r.status).toBe(201)
  return r.body as { id: number; dropped?: number }
}

describe('injected faults', () => {
  it('are the owner\'s to inject, and bad ones are refused with the reason', async () => {
    expect((await t.rest('POST', '/hyperhub/faults', { body: { kind: 'throttle', seconds: 5 }, token: t.serviceToken('service') })).status).toBe(401)
    const bad = await t.rest('POST', '/hyperhub/faults', { body: { kind: 'explode', seconds: 5 } })
    expect({ status: bad.status, message: bad.body.Message }).toEqual({ status: 400, message: 'ErrorCode:ArgumentInvalid;kind must be one of throttle, server-busy, drop-connections, delay-acks, not explode' })
    const noDelay = await t.rest('POST', '/hyperhub/faults', { body: { kind: 'delay-acks', seconds: 5 } })
    expect(noDelay.body.Message).toBe('ErrorCode:ArgumentInvalid;delay-acks needs delayMs, a number from 0 to 60000')
  })

  it('a throttle for one device closes that device\'s MQTT connection on telemetry; another device goes on; it ends on time', async () => {
    const { id } = await inject({ kind: 'throttle', deviceId: 'fi-a', protocol: 'mqtt', seconds: 30 })
    const a = (await mqtt('fi-a')).client
    const b = (await mqtt('fi-b')).client
    a.publish('devices/fi-a/messages/events/', 'x', 1).catch(() => {})
    await a.closed
    await b.publish('devices/fi-b/messages/events/', 'x', 1)
    clock.advance(31_000)
    expect((await t.rest('GET', '/hyperhub/faults')).body).toEqual([])
    const again = (await mqtt('fi-a')).client
    await again.publish('devices/fi-a/messages/events/', 'x', 1)
    await again.disconnect()
    await b.disconnect()
    expect((await t.rest('DELETE', `/hyperhub/faults/${id}`)).status).toBe(404)
  })

  it('server busy for REST answers 503 ServerBusy, but not for the control plane, until taken back', async () => {
    const { id } = await inject({ kind: 'server-busy', protocol: 'rest', seconds: 60 })
    const r = await t.rest('GET', '/devices/fi-a')
    expect({ status: r.status, code: r.headers['iothub-errorcode'] }).toEqual({ status: 503, code: 'ServerBusy' })
    expect((await t.rest('GET', '/hyperhub/faults')).status).toBe(200)
    expect((await t.rest('DELETE', `/hyperhub/faults/${id}`)).status).toBe(204)
    expect((await t.rest('GET', '/devices/fi-a')).status).toBe(200)
  })

  it('drop-connections closes the device\'s connections now and refuses new ones (CONNACK 3) while it lasts', async () => {
    const a = (await mqtt('fi-a')).client
    const { dropped } = await inject({ kind: 'drop-connections', deviceId: 'fi-a', seconds: 10 })
    expect(dropped).toBe(1)
    await a.closed
    const refused = await mqtt('fi-a')
    expect(refused.connack.returnCode).toBe(3)
    refused.client.destroy()
    clock.advance(11_000)
    const back = await mqtt('fi-a')
    expect(back.connack.returnCode).toBe(0)
    back.client.destroy()
  })

  it('delay-acks holds AMQP acknowledgements of the device it names; a marker from another device is accepted first', async () => {
    await inject({ kind: 'delay-acks', deviceId: 'fi-amqp', delayMs: 300, seconds: 10 })
    const conn = await amqpConnect(t.hub.ports.amqp!, t.ca)
    expect(await putToken(conn, t.deviceToken('fi-amqp', keys.get('fi-amqp')!), encodeURIComponent('localhost/devices/fi-amqp'))).toBe(200)
    const sender = conn.open_sender({ target: { address: '/devices/fi-amqp/messages/events' } })
    await next(sender, 'sendable')
    const order: string[] = []
    sender.once('accepted', () => order.push('delayed device'))
    sender.send({ message_id: 'late', body: 'x' })
    const b = (await mqtt('fi-b')).client
    await b.publish('devices/fi-b/messages/events/', 'marker', 1)
    order.push('marker')
    await b.disconnect()
    await until(() => order.length, (n) => n === 2)
    expect(order).toEqual(['marker', 'delayed device'])
    conn.close()
  })

  it('acknowledgements a delay-acks fault holds are not overtaken once it ends', async () => {
    const { id } = await inject({ kind: 'delay-acks', deviceId: 'fi-b', delayMs: 400, seconds: 60 })
    const b = (await mqtt('fi-b')).client
    const order: string[] = []
    const held = b.publish('devices/fi-b/messages/events/%24.mid=held', 'x', 1).then(() => order.push('held'))
    // committed, and its PUBACK held by the fault
    const heldAcks = () => (t.hub.edge as unknown as { heldAcks: Map<number, unknown> }).heldAcks.size
    await until(heldAcks, (n) => n === 1)
    expect((await t.rest('DELETE', `/hyperhub/faults/${id}`)).status).toBe(204)
    const after = b.publish('devices/fi-b/messages/events/%24.mid=after', 'x', 1).then(() => order.push('after'))
    await Promise.all([held, after])
    expect(order).toEqual(['held', 'after'])
    await b.disconnect()
  })
})
