// Issue 17 item 4: shared access policies managed on the control plane. Changes are stored before
// they are answered, apply to the next token at once, survive a restart, and end the connections
// (MQTT, AMQP, the event stream) whose token a regenerated key or a deleted policy no longer signs.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import type mqttPacket from 'mqtt-packet'
import { createSasToken } from '../src/auth/sas-token.js'
import { MAX_POLICIES } from '../src/auth/policy-registry.js'
import { amqpConnect, closeError, next, putToken } from './helpers/amqp-client.js'
import { MqttTestClient } from './helpers/mqtt-test-client.js'
import { startTestHub, tempDir, type TestHub } from './helpers/test-hub.js'
import { rmSync } from 'node:fs'
import { spawnHub } from './helpers/hub-process.js'

const API = '?api-version=2021-04-12'
let t: TestHub
let dataDir: string
beforeAll(async () => {
  dataDir = tempDir()
  t = await startTestHub({}, { dataDir })
  await t.createDevice('pm-dev')
  await t.createDevice('pm-dev2')
})
afterAll(async () => {
  await t.stop()
  rmSync(dataDir, { recursive: true, force: true })
})

const policyToken = (name: string, key: string) => createSasToken('localhost', key, name)
const errorOf = (r: { status: number; body: any }) => ({ status: r.status, message: r.body?.Message?.replace(/^ErrorCode:\w+;/, '') })

async function mqttWithPolicy(deviceId: string, policy: string, key: string) {
  const { client, connack } = await MqttTestClient.connect({ port: t.hub.ports.mqttTcp!, clientId: deviceId, password: policyToken(policy, key) })
  expect(connack.returnCode).toBe(0)
  return client
}

describe('managing policies', () => {
  it('lists the defaults in ARM\'s form, creates one that works at once, and changes its rights', async () => {
    const list = await t.rest('GET', `/hyperhub/policies${API}`)
    expect(list.status).toBe(200)
    expect(list.body.value.map((p: any) => [p.keyName, p.rights])).toEqual([
      ['iothubowner', 'RegistryRead, RegistryWrite, ServiceConnect, DeviceConnect'], ['service', 'ServiceConnect'], ['device', 'DeviceConnect'],
      ['registryRead', 'RegistryRead'], ['registryReadWrite', 'RegistryRead, RegistryWrite'],
    ])
    const created = await t.rest('PUT', `/hyperhub/policies/reader${API}`, { body: { rights: 'RegistryRead' } })
    expect(created.status).toBe(201)
    expect(created.body).toMatchObject({ keyName: 'reader', rights: 'RegistryRead' })
    const token = policyToken('reader', created.body.primaryKey)
    expect((await t.rest('GET', `/devices/pm-dev${API}`, { token })).status).toBe(200)
    expect(errorOf(await t.rest('POST', `/devices/query${API}`, { token, body: { query: 'SELECT * FROM devices' } })))
      .toEqual({ status: 401, message: "Authorization rule 'reader' does not allow access for 'ServiceConnect'" })
    // the same name again: rights change, keys stay
    const changed = await t.rest('PUT', `/hyperhub/policies/reader${API}`, { body: { rights: ['RegistryRead', 'ServiceConnect'] } })
    expect(changed.status).toBe(200)
    expect(changed.body).toEqual({ keyName: 'reader', rights: 'RegistryRead, ServiceConnect', primaryKey: created.body.primaryKey, secondaryKey: created.body.secondaryKey })
    expect((await t.rest('POST', `/devices/query${API}`, { token, body: { query: 'SELECT * FROM devices' } })).status).toBe(200)
    expect((await t.rest('DELETE', `/hyperhub/policies/reader${API}`)).status).toBe(204)
    expect(errorOf(await t.rest('GET', `/devices/pm-dev${API}`, { token }))).toEqual({ status: 401, message: 'Unauthorized: unknown policy' })
    expect(errorOf(await t.rest('GET', `/hyperhub/policies/reader${API}`))).toEqual({ status: 404, message: "shared access policy 'reader' does not exist" })
  })

  it('refuses what Azure refuses, with exact errors, and changes nothing', async () => {
    const before = (await t.rest('GET', `/hyperhub/policies${API}`)).body
    const put = (name: string, body: unknown) => t.rest('PUT', `/hyperhub/policies/${name}${API}`, { body }).then(errorOf)
    expect(await put('bad%20name', { rights: 'ServiceConnect' })).toEqual({ status: 400, message: "policy name 'bad name' must be 1 to 64 letters, digits, '.', '_' or '-'" })
    expect(await put('p'.repeat(65), { rights: 'ServiceConnect' })).toEqual({ status: 400, message: `policy name '${'p'.repeat(65)}' must be 1 to 64 letters, digits, '.', '_' or '-'` })
    expect(await put('x', {})).toEqual({ status: 400, message: 'rights must name at least one of RegistryRead, RegistryWrite, ServiceConnect, DeviceConnect' })
    expect(await put('x', { rights: 'ServiceConnect, Everything' })).toEqual({ status: 400, message: "rights: 'Everything' is not one of RegistryRead, RegistryWrite, ServiceConnect, DeviceConnect" })
    expect(await put('x', { rights: 'ServiceConnect', primaryKey: 'short' })).toEqual({ status: 400, message: 'primaryKey must be base64 of 16 to 64 bytes' })
    expect(await put('iothubowner', { rights: 'ServiceConnect' })).toEqual({ status: 400, message: "iothubowner keeps every right: the hub's configuration is managed with it" })
    expect(errorOf(await t.rest('DELETE', `/hyperhub/policies/iothubowner${API}`))).toEqual({ status: 400, message: "iothubowner cannot be deleted: the hub's configuration is managed with it" })
    expect(errorOf(await t.rest('DELETE', `/hyperhub/policies/nobody${API}`))).toEqual({ status: 404, message: "shared access policy 'nobody' does not exist" })
    expect(errorOf(await t.rest('POST', `/hyperhub/policies/service/regenerateKey${API}`, { body: { keyType: 'TertiaryKey' } }))).toEqual({ status: 400, message: 'keyType must be "PrimaryKey" or "SecondaryKey"' })
    expect(errorOf(await t.rest('POST', `/hyperhub/policies/nobody/regenerateKey${API}`, { body: { keyType: 'PrimaryKey' } }))).toEqual({ status: 404, message: "shared access policy 'nobody' does not exist" })
    expect((await t.rest('GET', `/hyperhub/policies${API}`)).body).toEqual(before)
  })

  it('holds at most 16 policies, at most 10 of them with ServiceConnect', async () => {
    // 5 defaults, 2 with ServiceConnect: 8 more reach 10
    for (let i = 0; i < 8; i++) expect((await t.rest('PUT', `/hyperhub/policies/svc${i}${API}`, { body: { rights: 'ServiceConnect' } })).status).toBe(201)
    expect(errorOf(await t.rest('PUT', `/hyperhub/policies/svc8${API}`, { body: { rights: 'ServiceConnect' } }))).toEqual({ status: 400, message: 'at most 10 shared access policies may grant ServiceConnect' })
    // changing one of the ten is not an eleventh
    expect((await t.rest('PUT', `/hyperhub/policies/svc0${API}`, { body: { rights: 'ServiceConnect, RegistryRead' } })).status).toBe(200)
    for (let i = 0; i < MAX_POLICIES - 13; i++) expect((await t.rest('PUT', `/hyperhub/policies/reg${i}${API}`, { body: { rights: 'RegistryRead' } })).status).toBe(201)
    expect(errorOf(await t.rest('PUT', `/hyperhub/policies/one-too-many${API}`, { body: { rights: 'RegistryRead' } }))).toEqual({ status: 400, message: 'a hub has at most 16 shared access policies' })
    expect((await t.rest('GET', `/hyperhub/policies${API}`)).body.value).toHaveLength(16)
    for (const name of [...Array.from({ length: 8 }, (_, i) => `svc${i}`), ...Array.from({ length: 3 }, (_, i) => `reg${i}`)]) {
      expect((await t.rest('DELETE', `/hyperhub/policies/${name}${API}`)).status).toBe(204)
    }
  })
})

describe('revoking a key', () => {
  it('regenerating the primary key refuses its tokens and closes the MQTT connection it signed; the secondary key\'s connection stays', async () => {
    const device = t.hub.policies.find((p) => p.keyName === 'device')!
    const onPrimary = await mqttWithPolicy('pm-dev', 'device', device.primaryKey)
    const onSecondary = await mqttWithPolicy('pm-dev2', 'device', device.secondaryKey)
    const r = await t.rest('POST', `/hyperhub/policies/device/regenerateKey${API}`, { body: { keyType: 'PrimaryKey' } })
    expect(r.status).toBe(200)
    expect(r.body.primaryKey).not.toBe(device.primaryKey)
    expect(r.body.secondaryKey).toBe(device.secondaryKey)
    await onPrimary.closed
    // the other connection still works: its publish is acknowledged
    onSecondary.send({ cmd: 'publish', topic: 'devices/pm-dev2/messages/events/', payload: Buffer.from('still here'), qos: 1, messageId: 7, dup: false, retain: false } as mqttPacket.IPublishPacket)
    expect((await onSecondary.next('puback') as mqttPacket.IPubackPacket).messageId).toBe(7)
    onSecondary.socket.destroy()
    // a new connection with the old key is refused; with the new key it opens
    const old = await MqttTestClient.connect({ port: t.hub.ports.mqttTcp!, clientId: 'pm-dev', password: policyToken('device', device.primaryKey) })
    expect(old.connack.returnCode).toBe(5)
    ;(await mqttWithPolicy('pm-dev', 'device', r.body.primaryKey)).socket.destroy()
  })

  it('closes an AMQP connection whose service token the change revoked, with unauthorized-access', async () => {
    const service = t.hub.policies.find((p) => p.keyName === 'service')!
    const conn = await amqpConnect(t.hub.ports.amqp!, t.ca)
    expect(await putToken(conn, policyToken('service', service.primaryKey), 'localhost')).toBe(200)
    const sender = conn.open_sender({ target: { address: '/messages/devicebound' } })
    await next(sender, 'sendable')
    const closing = closeError(conn)
    expect((await t.rest('POST', `/hyperhub/policies/service/regenerateKey${API}`, { body: { keyType: 'PrimaryKey' } })).status).toBe(200)
    expect(await closing).toMatchObject({ condition: 'amqp:unauthorized-access', description: 'the shared access policy key that signed a token on this connection was revoked' })
  })

  it('closes an event stream when its policy loses ServiceConnect', async () => {
    const created = (await t.rest('PUT', `/hyperhub/policies/streamer${API}`, { body: { rights: 'ServiceConnect' } })).body
    const ws = new WebSocket(`wss://localhost:${t.hub.ports.https}/messages/events/stream`, { ca: t.ca, headers: { Authorization: policyToken('streamer', created.primaryKey) } })
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
    const closed = new Promise<[number, string]>((resolve) => ws.once('close', (code, reason) => resolve([code, reason.toString()])))
    expect((await t.rest('PUT', `/hyperhub/policies/streamer${API}`, { body: { rights: 'RegistryRead' } })).status).toBe(200)
    expect(await closed).toEqual([1008, 'the shared access policy key that signed its token was revoked'])
  })

  it('a hub whose "service" policy was deleted still starts, and names another ServiceConnect policy for the Event Hubs endpoint', async () => {
    const dir = tempDir()
    let hub = await spawnHub(dir)
    try {
      expect((await hub.rest('DELETE', `/hyperhub/policies/service${API}`)).status).toBe(204)
      expect((await hub.rest('PUT', `/hyperhub/policies/reader${API}`, { rights: 'ServiceConnect' })).status).toBe(201)
      hub.child.kill('SIGTERM')
      await hub.exited
      hub = await spawnHub(dir)
      expect(hub.eventHubsConnectionString).toMatch(/;SharedAccessKeyName=reader;/)
    } finally {
      hub.child.kill('SIGTERM')
      await hub.exited
      rmSync(dir, { recursive: true, force: true })
    }
  }, 60_000)

  it('keeps what it committed across a restart', async () => {
    const created = (await t.rest('PUT', `/hyperhub/policies/durable${API}`, { body: { rights: 'RegistryRead' } })).body
    await t.hub.stop()
    t = await startTestHub({}, { dataDir })
    const again = await t.rest('GET', `/hyperhub/policies/durable${API}`)
    expect(again.body).toEqual(created)
    expect((await t.rest('GET', `/devices/pm-dev${API}`, { token: policyToken('durable', created.primaryKey) })).status).toBe(200)
  })
})
