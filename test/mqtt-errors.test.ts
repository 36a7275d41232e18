// Bad credentials, bad packets and forbidden topics: each gets IoT Hub's answer, closes only the
// offending connection, stores nothing, and a bystander device keeps working throughout.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createSasToken } from '../src/auth/sas-token.js'
import mqttPacket from 'mqtt-packet'
import { MqttTestClient } from './helpers/mqtt-test-client.js'
import { startTestHub, type TestHub } from './helpers/test-hub.js'
import { eventsOf, readAllEvents, waitForEvents } from './helpers/events.js'

let t: TestHub
let bystander: MqttTestClient
let key: string
let bystanderSent = 0

beforeAll(async () => {
  t = await startTestHub()
  key = (await t.createDevice('err-dev')).primaryKey
  const b = await t.createDevice('bystander')
  bystander = (await MqttTestClient.connect({ port: t.hub.ports.mqttTcp!, clientId: 'bystander', password: t.deviceToken('bystander', b.primaryKey) })).client
})
afterAll(async () => {
  // the bystander saw every error go by and still got all its messages stored
  expect(eventsOf(await readAllEvents(t), 'bystander')).toHaveLength(bystanderSent)
  await bystander.disconnect()
  await t.stop()
})

async function bystanderStillServed(): Promise<void> {
  await bystander.publish('devices/bystander/messages/events/', `ping ${bystanderSent}`, 1)
  bystanderSent++
}

const port = () => t.hub.ports.mqttTcp!

async function expectRefused(opts: Partial<Parameters<typeof MqttTestClient.connect>[0]>, code: number): Promise<void> {
  const { client, connack } = await MqttTestClient.connect({ port: port(), clientId: 'err-dev', password: t.deviceToken('err-dev', key), ...opts })
  expect(connack.returnCode).toBe(code)
  await client.closed
  await bystanderStillServed()
}

async function connected(deviceId = 'err-dev', extra: Partial<Parameters<typeof MqttTestClient.connect>[0]> = {}): Promise<MqttTestClient> {
  const k = deviceId === 'err-dev' ? key : t.hub.registry.get(deviceId)!.authentication.symmetricKey.primaryKey!
  const { client, connack } = await MqttTestClient.connect({ port: port(), clientId: deviceId, password: t.deviceToken(deviceId, k), ...extra })
  expect(connack.returnCode).toBe(0)
  return client
}

async function expectClosedAfter(client: MqttTestClient, act: () => void): Promise<void> {
  act()
  await client.closed
  await bystanderStillServed()
}

describe('CONNECT is refused with Azure\'s CONNACK codes', () => {
  it('wrong key → 5', () => expectRefused({ password: t.deviceToken('err-dev', Buffer.alloc(32, 1).toString('base64')) }, 5))
  it('expired token → 5', () => expectRefused({ password: t.deviceToken('err-dev', key, -400) }, 5))
  it('token for another device → 5', () => expectRefused({ password: t.deviceToken('bystander', key) }, 5))
  it('token for another hub → 5', () => expectRefused({ password: createSasToken(encodeURIComponent('elsewhere.azure-devices.net/devices/err-dev'), key) }, 5))
  it('no password → 5', () => expectRefused({ password: undefined }, 5))
  it('garbage password → 5', () => expectRefused({ password: 'hunter2' }, 5))
  it('a token whose fields are not URL-encoded → 5 (and the hub keeps serving)', () =>
    expectRefused({ password: 'SharedAccessSignature sr=localhost%2Fdevices%2Ferr-dev&sig=a&se=9999999999&skn=%E0%A4%A' }, 5))
  it('unknown device → 5', () => expectRefused({ clientId: 'nobody', username: 'localhost/nobody/?api-version=2021-04-12', password: t.deviceToken('nobody', key) }, 5))
  it('username for another device → 5', () => expectRefused({ username: 'localhost/bystander/?api-version=2021-04-12' }, 5))
  it('unknown module → 5', () => expectRefused({ clientId: 'err-dev/mod1', username: 'localhost/err-dev/mod1/?api-version=2021-04-12' }, 5))
  it('disabled device → 5', async () => {
    const d = await t.createDevice('err-disabled', { status: 'disabled' })
    await expectRefused({ clientId: 'err-disabled', username: 'localhost/err-disabled/?api-version=2021-04-12', password: t.deviceToken('err-disabled', d.primaryKey) }, 5)
  })
  it('a DeviceConnect policy token works; a policy without DeviceConnect does not', async () => {
    const policyToken = (name: string) => createSasToken(encodeURIComponent('localhost/devices/err-dev'), t.policyKey(name), name)
    const ok = await connected('err-dev', { password: policyToken('device') })
    await ok.disconnect()
    await expectRefused({ password: policyToken('registryReadWrite') }, 5)
  })
  it('MQTT 3.1 → 1', async () => {
    const client = await MqttTestClient.open(port())
    client.send({ cmd: 'connect', protocolId: 'MQIsdp', protocolVersion: 3, clientId: 'err-dev', clean: false, keepalive: 60, username: 'localhost/err-dev/?api-version=2021-04-12', password: Buffer.from(t.deviceToken('err-dev', key)) })
    expect(((await client.next('connack')) as { returnCode: number }).returnCode).toBe(1)
    await client.closed
  })
})

describe('malformed input closes only that connection', () => {
  it('garbage bytes', async () => {
    const c = await MqttTestClient.open(port())
    await expectClosedAfter(c, () => c.writeRaw(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')))
  })
  it('a CONNECT whose lengths lie', async () => {
    const c = await MqttTestClient.open(port())
    // CONNECT, remaining length 12, protocol name length 200
    await expectClosedAfter(c, () => c.writeRaw(Buffer.from([0x10, 12, 0, 200, 77, 81, 84, 84, 4, 2, 0, 60, 0, 0])))
  })
  it('a remaining length of five bytes', async () => {
    const c = await MqttTestClient.open(port())
    await expectClosedAfter(c, () => c.writeRaw(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01])))
  })
  it('PUBLISH before CONNECT', async () => {
    const c = await MqttTestClient.open(port())
    await expectClosedAfter(c, () => c.send({ cmd: 'publish', topic: 'devices/err-dev/messages/events/', payload: Buffer.from('x'), qos: 0, retain: false, dup: false }))
  })
  it('a PUBLISH whose topic overruns the packet', async () => {
    const c = await connected()
    await expectClosedAfter(c, () => c.writeRaw(Buffer.from([0x32, 5, 0, 50, 0x61, 0, 1])))
  })
  it('a second CONNECT', async () => {
    const c = await connected()
    await expectClosedAfter(c, () => c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'err-dev', clean: false, keepalive: 60 }))
  })
  it('a 300 KB message is not acknowledged nor stored', async () => {
    const before = eventsOf(await readAllEvents(t), 'err-dev').length
    const c = await connected()
    await expectClosedAfter(c, () => c.send({ cmd: 'publish', topic: 'devices/err-dev/messages/events/', payload: Buffer.alloc(300 * 1024, 1), qos: 1, messageId: 1, retain: false, dup: false }))
    expect(c.packets.some((p) => p.cmd === 'puback')).toBe(false)
    expect(eventsOf(await readAllEvents(t), 'err-dev')).toHaveLength(before)
  })
  it('a message over 256 KB once its properties count is refused, one just under is stored', async () => {
    const c = await connected()
    await c.publish('devices/err-dev/messages/events/%24.mid=just-under', Buffer.alloc(256 * 1024 - 100), 1)
    const before = eventsOf(await readAllEvents(t), 'err-dev').length
    const c2 = await connected()
    await c.closed // taken over by c2
    await expectClosedAfter(c2, () => c2.send({ cmd: 'publish', topic: `devices/err-dev/messages/events/big=${'x'.repeat(200)}`, payload: Buffer.alloc(256 * 1024 - 100), qos: 1, messageId: 2, retain: false, dup: false }))
    expect(eventsOf(await readAllEvents(t), 'err-dev')).toHaveLength(before)
  })
})

describe('topics and QoS', () => {
  it('publishing to another device\'s topic closes the connection and stores nothing', async () => {
    const c = await connected()
    await expectClosedAfter(c, () => c.send({ cmd: 'publish', topic: 'devices/bystander/messages/events/', payload: Buffer.from('spoof'), qos: 1, messageId: 3, retain: false, dup: false }))
    const spoofed = eventsOf(await readAllEvents(t), 'bystander').filter((e) => Buffer.from(e.body, 'base64').toString() === 'spoof')
    expect(spoofed).toHaveLength(0)
  })
  it('QoS 2 closes the connection', async () => {
    const c = await connected()
    await expectClosedAfter(c, () => c.send({ cmd: 'publish', topic: 'devices/err-dev/messages/events/', payload: Buffer.from('q2'), qos: 2, messageId: 4, retain: false, dup: false }))
  })
  it('an undocumented topic closes the connection', async () => {
    const c = await connected()
    await expectClosedAfter(c, () => c.send({ cmd: 'publish', topic: 'some/topic', payload: Buffer.from('x'), qos: 0, retain: false, dup: false }))
  })
  it('subscriptions: documented filters granted (QoS 2 downgraded to 1), others refused with 0x80', async () => {
    const c = await connected()
    expect(await c.subscribe('devices/err-dev/messages/devicebound/#', 1)).toEqual([1])
    expect(await c.subscribe('$iothub/methods/POST/#', 0)).toEqual([0])
    c.send({ cmd: 'subscribe', messageId: 77, subscriptions: [{ topic: '$iothub/twin/res/#', qos: 2 }] })
    expect(((await c.next('suback')) as { granted: number[] }).granted).toEqual([1])
    expect(await c.subscribe('devices/bystander/messages/devicebound/#', 1)).toEqual([0x80])
    expect(await c.subscribe('#', 1)).toEqual([0x80])
    c.send({ cmd: 'pingreq' })
    await c.next('pingresp')
    // a SUBACK longer than 127 bytes needs a multi-byte remaining length
    const many = Array.from({ length: 200 }, (_, i) => ({ topic: i % 2 ? '$iothub/methods/POST/#' : `nope/${i}`, qos: 1 as const }))
    c.send({ cmd: 'subscribe', messageId: 78, subscriptions: many })
    const big = (await c.next('suback', (p) => p.messageId === 78)) as { granted: number[] }
    expect(big.granted).toEqual(many.map((_, i) => (i % 2 ? 1 : 0x80)))
    await c.disconnect()
  })
})

describe('sessions', () => {
  it('packets sent right after CONNECT, before the CONNACK, are handled in order', async () => {
    const c = await MqttTestClient.open(port())
    const connect = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'err-dev', clean: true, keepalive: 60,
      username: 'localhost/err-dev/?api-version=2021-04-12', password: Buffer.from(t.deviceToken('err-dev', key)) } as mqttPacket.IConnectPacket)
    const subscribe = mqttPacket.generate({ cmd: 'subscribe', messageId: 5, subscriptions: [{ topic: '$iothub/methods/POST/#', qos: 0 }] } as mqttPacket.ISubscribePacket)
    const publish = mqttPacket.generate({ cmd: 'publish', topic: 'devices/err-dev/messages/events/%24.mid=pipelined', payload: Buffer.from('early'), qos: 1, messageId: 6, retain: false, dup: false } as mqttPacket.IPublishPacket)
    const suback = c.next('suback')
    const puback = c.next('puback')
    c.writeRaw(Buffer.concat([connect, subscribe, publish]))
    expect(await suback).toMatchObject({ messageId: 5, granted: [0] })
    expect(await puback).toMatchObject({ messageId: 6 })
    expect(c.packets.map((p) => p.cmd).slice(0, 3)).toEqual(['connack', 'suback', 'puback'])
    expect(eventsOf(await readAllEvents(t), 'err-dev').some((e) => e.systemProperties['message-id'] === 'pipelined')).toBe(true)
    await c.disconnect()
  })

  it('a second CONNECT for the client id takes over the first', async () => {
    const first = await connected()
    const second = await connected()
    await first.closed
    await second.publish('devices/err-dev/messages/events/%24.mid=after-takeover', 'x', 1)
    await second.disconnect()
  })
  it('clean session 0 resumes its session (session present), clean session 1 does not', async () => {
    await t.createDevice('err-session')
    const a = await MqttTestClient.connect({ port: port(), clientId: 'err-session', password: t.deviceToken('err-session', t.hub.registry.get('err-session')!.authentication.symmetricKey.primaryKey!), clean: false })
    expect(a.connack.sessionPresent).toBe(false)
    await a.client.subscribe('devices/err-session/messages/devicebound/#', 1)
    await a.client.disconnect()
    const b = await connected('err-session', { clean: false })
    expect(b.packets[0]).toMatchObject({ cmd: 'connack', sessionPresent: true })
    await b.disconnect()
    const c = await connected('err-session', { clean: true })
    expect(c.packets[0]).toMatchObject({ cmd: 'connack', sessionPresent: false })
    await c.disconnect()
    const d = await connected('err-session', { clean: false })
    expect(d.packets[0]).toMatchObject({ cmd: 'connack', sessionPresent: false })
    await d.disconnect()
  })
  it('a will is sent as telemetry on an ungraceful close, not after DISCONNECT', async () => {
    await t.createDevice('err-will')
    const will = { topic: 'devices/err-will/messages/events/reason=gone', payload: Buffer.from('bye'), qos: 1 as const, retain: false }
    const graceful = await connected('err-will', { will })
    await graceful.disconnect()
    const abrupt = await connected('err-will', { will })
    abrupt.destroy()
    const events = await waitForEvents(t, 'err-will', 1)
    expect(events).toHaveLength(1)
    expect(events[0]!.properties).toEqual({ reason: 'gone', 'iothub-MessageType': 'Will' })
    expect(Buffer.from(events[0]!.body, 'base64').toString()).toBe('bye')
  })
  it('a will on a foreign topic is refused', async () => {
    await expectRefused({ will: { topic: 'devices/bystander/messages/events/', payload: Buffer.from('x'), qos: 0, retain: false } }, 5)
  })
  it('silence past 1.5 × keep-alive closes the connection', async () => {
    const c = await connected('err-dev', { keepalive: 1 })
    await c.closed
  })
  // 4 s left of the skew: room for the CONNACK on a loaded machine (its session write can take a second), then the close
  it('the connection closes when the token expires (after Azure\'s 5-minute skew)', async () => {
    const c = await connected('err-dev', { password: t.deviceToken('err-dev', key, -296) })
    await c.closed
  })
  it('disabling or deleting a connected device disconnects it', async () => {
    const d = await t.createDevice('err-kick')
    const c = await connected('err-kick')
    await expectClosedAfter(c, () => void t.rest('PUT', '/devices/err-kick', { body: { deviceId: 'err-kick', status: 'disabled' }, headers: { 'If-Match': `"${d.etag}"` } }))
    await t.rest('PUT', '/devices/err-kick', { body: { deviceId: 'err-kick', status: 'enabled', authentication: { symmetricKey: { primaryKey: d.primaryKey, secondaryKey: d.primaryKey } } }, headers: { 'If-Match': '"*"' } })
    const again = await connected('err-kick')
    await expectClosedAfter(again, () => void t.rest('DELETE', '/devices/err-kick'))
  })
})
