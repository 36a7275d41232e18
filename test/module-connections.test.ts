// Issue 16: module connections over raw MQTT, as a hostile client would try them. A module's token
// opens only that module (not another, not its device); a device's token does not open its modules;
// a module of an unknown device or an unknown module is refused; a second connection with the same
// module id takes over; a module publishes only on its own topic and subscribes only to its inputs;
// deleting the module or its device closes the connection.
import { closeCount, closeReasonAfter } from './helpers/log-wait.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type mqttPacket from 'mqtt-packet'
import { createSasToken } from '../src/auth/sas-token.js'
import { MqttTestClient } from './helpers/mqtt-test-client.js'
import { startTestHub, type TestHub } from './helpers/test-hub.js'
import { waitForEvents } from './helpers/events.js'

let t: TestHub
const logRecords: Record<string, unknown>[] = []
beforeAll(async () => { t = await startTestHub({}, { logRecords }) })
afterAll(async () => { await t?.stop() })

const modulePath = (d: string, m: string) => `/devices/${d}/modules/${m}?api-version=2021-04-12`

async function addModule(deviceId: string, moduleId: string): Promise<string> {
  if (!t.hub.registry.get(deviceId)) await t.createDevice(deviceId)
  const r = await t.rest('PUT', modulePath(deviceId, moduleId), { body: {} })
  if (r.status !== 200) throw new Error(`module not created: ${r.status} ${r.text}`)
  return r.body.authentication.symmetricKey.primaryKey as string
}

const moduleToken = (d: string, m: string, key: string) => createSasToken(encodeURIComponent(`localhost/devices/${d}/modules/${m}`), key, undefined, 3600)

function connectModule(d: string, m: string, password: string, username = `localhost/${d}/${m}/?api-version=2021-04-12`) {
  return MqttTestClient.connect({ port: t.hub.ports.mqttTcp!, clientId: `${d}/${m}`, username, password })
}

/** The reason the hub logged for the last closed connection (logged as it closes, before the client sees the CONNACK or the close). */
/** closes this file's assertions have looked at: each expected reason is found among the closes after them */
let closesSeen = 0
/** The expected close reason once it is logged after the ones already checked (I/O threads' logs arrive a moment after the client saw the close). */
const closeReason = async (expected: string) => {
  const reason = await closeReasonAfter(logRecords, closesSeen, (r) => r === expected)
  closesSeen = closeCount(logRecords)
  return reason
}

describe('module connections over MQTT', () => {
  it('a module\'s own token opens it; another module\'s token, the device\'s token and a wrong username do not', async () => {
    const keyA = await addModule('mc-auth', 'a')
    await addModule('mc-auth', 'b')
    const device = t.hub.registry.get('mc-auth')!
    const ok = await connectModule('mc-auth', 'a', moduleToken('mc-auth', 'a', keyA))
    expect(ok.connack.returnCode).toBe(0)
    await ok.client.disconnect()
    // a's token presented for b: its sr names a
    const other = await connectModule('mc-auth', 'b', moduleToken('mc-auth', 'a', keyA))
    expect(other.connack.returnCode).toBe(5)
    expect(await closeReason('connection refused: token is for another module or the device')).toBe('connection refused: token is for another module or the device')
    // the device's own token does not open its module, and a module token does not open the device
    const deviceToken = t.deviceToken('mc-auth', device.authentication.symmetricKey.primaryKey!)
    expect((await connectModule('mc-auth', 'a', deviceToken)).connack.returnCode).toBe(5)
    expect((await MqttTestClient.connect({ port: t.hub.ports.mqttTcp!, clientId: 'mc-auth', password: moduleToken('mc-auth', 'a', keyA) })).connack.returnCode).toBe(5)
    expect(await closeReason('connection refused: token is for another device')).toBe('connection refused: token is for another device')
    // the module's token signed with the device's key
    expect((await connectModule('mc-auth', 'a', moduleToken('mc-auth', 'a', device.authentication.symmetricKey.primaryKey!))).connack.returnCode).toBe(5)
    // the username must name the module too
    expect((await connectModule('mc-auth', 'a', moduleToken('mc-auth', 'a', keyA), 'localhost/mc-auth/?api-version=2021-04-12')).connack.returnCode).toBe(5)
    expect(await closeReason('connection refused: username is not {hostName}/{deviceId}/{moduleId}/?api-version=...')).toBe('connection refused: username is not {hostName}/{deviceId}/{moduleId}/?api-version=...')
  })

  it('a DeviceConnect policy token opens a module when it covers the hub, the device or that module, not another module', async () => {
    await addModule('mc-policy', 'a')
    const policy = t.hub.policies.find((p) => p.keyName === 'device')!
    const token = (sr: string) => createSasToken(encodeURIComponent(sr), policy.primaryKey, 'device', 3600)
    for (const sr of ['localhost', 'localhost/devices', 'localhost/devices/mc-policy', 'localhost/devices/mc-policy/modules/a']) {
      const c = await connectModule('mc-policy', 'a', token(sr))
      expect({ sr, code: c.connack.returnCode }).toEqual({ sr, code: 0 })
      await c.client.disconnect()
    }
    for (const sr of ['localhost/devices/mc-policy/modules', 'localhost/devices/mc-policy/modules/b', 'localhost/devices/mc-policy/modules/a/x']) {
      const c = await connectModule('mc-policy', 'a', token(sr))
      expect({ sr, code: c.connack.returnCode }).toEqual({ sr, code: 5 })
    }
  })

  it('refuses a module of a device that does not exist, a module that does not exist, and a malformed client id', async () => {
    const key = await addModule('mc-missing', 'm')
    expect((await connectModule('mc-nobody', 'm', moduleToken('mc-nobody', 'm', key))).connack.returnCode).toBe(5)
    expect(await closeReason('connection refused: device mc-nobody is not registered')).toBe('connection refused: device mc-nobody is not registered')
    expect((await connectModule('mc-missing', 'ghost', moduleToken('mc-missing', 'ghost', key))).connack.returnCode).toBe(5)
    expect(await closeReason('connection refused: module ghost of device mc-missing is not registered')).toBe('connection refused: module ghost of device mc-missing is not registered')
    const tooMany = await MqttTestClient.connect({ port: t.hub.ports.mqttTcp!, clientId: 'mc-missing/m/x', username: 'localhost/mc-missing/m/x/?api-version=2021-04-12', password: moduleToken('mc-missing', 'm', key) })
    expect(tooMany.connack.returnCode).toBe(2)
    const empty = await MqttTestClient.connect({ port: t.hub.ports.mqttTcp!, clientId: 'mc-missing/', username: 'localhost/mc-missing//?api-version=2021-04-12', password: moduleToken('mc-missing', 'm', key) })
    expect(empty.connack.returnCode).toBe(2)
  })

  it('a second connection with the same module id takes over; the device\'s own connection is not touched', async () => {
    const key = await addModule('mc-twice', 'm')
    const device = t.hub.registry.get('mc-twice')!
    const deviceConn = await MqttTestClient.connect({ port: t.hub.ports.mqttTcp!, clientId: 'mc-twice', password: t.deviceToken('mc-twice', device.authentication.symmetricKey.primaryKey!) })
    const first = await connectModule('mc-twice', 'm', moduleToken('mc-twice', 'm', key))
    const second = await connectModule('mc-twice', 'm', moduleToken('mc-twice', 'm', key))
    expect([deviceConn.connack.returnCode, first.connack.returnCode, second.connack.returnCode]).toEqual([0, 0, 0])
    await first.client.closed
    // the device and the new module connection both still publish
    await deviceConn.client.publish('devices/mc-twice/messages/events/n=1', 'device')
    await second.client.publish('devices/mc-twice/modules/m/messages/events/n=2', 'module')
    const events = await waitForEvents(t, 'mc-twice', 2)
    expect(events.map((e) => [Buffer.from(e.body as string, 'base64').toString(), e.systemProperties['iothub-connection-module-id']])).toEqual([['device', undefined], ['module', 'm']])
    await deviceConn.client.disconnect()
    await second.client.disconnect()
  })

  it('publishes only on its own topic and subscribes only to its own inputs, twins and methods', async () => {
    const key = await addModule('mc-topics', 'm')
    await addModule('mc-topics', 'n')
    const { client } = await connectModule('mc-topics', 'm', moduleToken('mc-topics', 'm', key))
    expect(await client.subscribe('devices/mc-topics/modules/m/inputs/#')).toEqual([1])
    expect(await client.subscribe('devices/mc-topics/modules/n/inputs/#')).toEqual([128])
    expect(await client.subscribe('devices/mc-topics/messages/devicebound/#')).toEqual([128])
    expect(await client.subscribe('$iothub/methods/POST/#')).toEqual([1])
    // the device's topic is not the module's
    client.send({ cmd: 'publish', topic: 'devices/mc-topics/messages/events/', payload: Buffer.from('x'), qos: 1, messageId: 9, retain: false, dup: false } as mqttPacket.IPublishPacket)
    await client.closed
    expect(await closeReason('publish to an unsupported topic')).toBe('publish to an unsupported topic')
    const again = await connectModule('mc-topics', 'm', moduleToken('mc-topics', 'm', key))
    again.client.send({ cmd: 'publish', topic: 'devices/mc-topics/modules/n/messages/events/', payload: Buffer.from('x'), qos: 1, messageId: 9, retain: false, dup: false } as mqttPacket.IPublishPacket)
    await again.client.closed
    expect(await closeReason('publish to another module\'s topic')).toBe('publish to another module\'s topic')
  })

  it('over HTTPS a module posts telemetry with its own token only; the event carries its module id', async () => {
    const key = await addModule('mc-https', 'h')
    const other = await addModule('mc-https', 'other')
    const device = t.hub.registry.get('mc-https')!
    const post = (token: string, id: string) => t.rest('POST', '/devices/mc-https/modules/h/messages/events?api-version=2021-04-12', { raw: `from ${id}`, token, headers: { 'iothub-messageid': id } })
    const refused = (r: { status: number; body: any }) => ({ status: r.status, message: r.body.Message })
    expect(refused(await post(moduleToken('mc-https', 'other', other), 'other'))).toEqual({ status: 401, message: 'ErrorCode:IotHubUnauthorized;Unauthorized: token is for another module or the device' })
    expect(refused(await post(t.deviceToken('mc-https', device.authentication.symmetricKey.primaryKey!), 'device'))).toEqual({ status: 401, message: 'ErrorCode:IotHubUnauthorized;Unauthorized: token is for another module or the device' })
    expect((await post(moduleToken('mc-https', 'h', key), 'mine')).status).toBe(204)
    const events = await waitForEvents(t, 'mc-https', 1)
    expect(events.map((e) => [e.systemProperties['message-id'], e.systemProperties['iothub-connection-module-id']])).toEqual([['mine', 'h']])
  })

  it('disabling its device closes a module\'s connection and refuses it until the device is enabled again', async () => {
    const key = await addModule('mc-disable', 'm')
    const conn = await connectModule('mc-disable', 'm', moduleToken('mc-disable', 'm', key))
    const d = t.hub.registry.get('mc-disable')!
    expect((await t.rest('PUT', '/devices/mc-disable?api-version=2021-04-12', { body: { deviceId: 'mc-disable', status: 'disabled', authentication: d.authentication }, headers: { 'If-Match': '*' } })).status).toBe(200)
    await conn.client.closed
    expect(await closeReason('device disabled')).toBe('device disabled')
    expect((await connectModule('mc-disable', 'm', moduleToken('mc-disable', 'm', key))).connack.returnCode).toBe(5)
    expect(await closeReason('connection refused: device mc-disable is disabled')).toBe('connection refused: device mc-disable is disabled')
  })

  it('deleting the module, or its device, closes its connection and refuses it from then on', async () => {
    const key = await addModule('mc-delete', 'm')
    const key2 = await addModule('mc-delete', 'm2')
    const conn = await connectModule('mc-delete', 'm', moduleToken('mc-delete', 'm', key))
    const conn2 = await connectModule('mc-delete', 'm2', moduleToken('mc-delete', 'm2', key2))
    expect((await t.rest('DELETE', modulePath('mc-delete', 'm'), { headers: { 'If-Match': '*' } })).status).toBe(204)
    await conn.client.closed
    expect(await closeReason('module deleted')).toBe('module deleted')
    expect((await connectModule('mc-delete', 'm', moduleToken('mc-delete', 'm', key))).connack.returnCode).toBe(5)
    expect((await t.rest('DELETE', '/devices/mc-delete?api-version=2021-04-12', { headers: { 'If-Match': '*' } })).status).toBe(204)
    await conn2.client.closed
    expect(await closeReason('device deleted')).toBe('device deleted')
  })
})
