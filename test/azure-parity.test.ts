// Issue 12: registry, C2D, routing and "not yet" answers as Azure IoT Hub gives them.
import { rmSync } from 'node:fs'
import type mqttPacket from 'mqtt-packet'
import rhea from 'rhea'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createSasToken } from '../src/auth/sas-token.js'
import { NEVER } from '../src/registry/device-registry.js'
import { amqpConnect, next } from './helpers/amqp-client.js'
import { connectDevice, nextPublish } from './helpers/device-mqtt.js'
import { spawnHub } from './helpers/hub-process.js'
import { startTestHub, tempDir, type TestHub } from './helpers/test-hub.js'

let t: TestHub
beforeAll(async () => { t = await startTestHub() })
afterAll(async () => { await t.stop() })

describe('registry', () => {
  it('a device created again under an old id has no last activity or connection history', async () => {
    const c = await connectDevice(t, 'reborn')
    await c.publish('devices/reborn/messages/events/', 'x', 1)
    await c.disconnect()
    const old = (await t.rest('GET', '/devices/reborn')).body
    expect(old.lastActivityTime).not.toBe(NEVER)
    expect((await t.rest('DELETE', '/devices/reborn')).status).toBe(204)
    await t.createDevice('reborn')
    const fresh = (await t.rest('GET', '/devices/reborn')).body
    expect({ lastActivityTime: fresh.lastActivityTime, connectionStateUpdatedTime: fresh.connectionStateUpdatedTime }).toEqual({ lastActivityTime: NEVER, connectionStateUpdatedTime: NEVER })
  })

  it('the twin\'s statusUpdateTime carries its Z (the identity\'s never-set time does not)', async () => {
    await t.createDevice('z-time')
    expect((await t.rest('GET', '/devices/z-time')).body.statusUpdatedTime).toBe('0001-01-01T00:00:00')
    expect((await t.rest('GET', '/twins/z-time')).body.statusUpdateTime).toBe('0001-01-01T00:00:00Z')
  })
})

describe('cloud-to-device', () => {
  it('feedback carries the hub\'s name as its user id', async () => {
    const c = await connectDevice(t, 'fb-user')
    await c.subscribe('devices/fb-user/messages/devicebound/#', 1)
    const got = nextPublish(c, 'devices/fb-user/')
    expect((await t.rest('POST', '/devices/fb-user/messages/deviceBound', { raw: 'x', headers: { 'iothub-ack': 'positive' } })).status).toBe(200)
    c.send({ cmd: 'puback', messageId: (await got).messageId } as mqttPacket.IPubackPacket)
    const deadline = Date.now() + 5000
    let fb = await t.rest('GET', '/messages/serviceBound/feedback')
    while (fb.status === 204 && Date.now() < deadline) fb = await t.rest('GET', '/messages/serviceBound/feedback')
    expect(fb.headers['iothub-userid']).toBe(t.hub.eventHubName)
    await c.disconnect()
  })

  it('refuses an AMQP C2D message with a bad `to` as an invalid operation (400003)', async () => {
    const conn = await amqpConnect(t.hub.ports.amqp!, t.ca)
    const { putToken } = await import('./helpers/amqp-client.js')
    expect(await putToken(conn, t.serviceToken('service'), 'localhost')).toBe(200)
    const sender = conn.open_sender({ target: { address: '/messages/devicebound' } })
    await next(sender, 'sendable')
    const rejected = next(sender, 'rejected')
    sender.send({ to: '/nowhere', body: 'x' })
    const error = (await rejected).delivery!.remote_state as { error?: rhea.AmqpError }
    expect(error.error?.condition).toBe('amqp:not-allowed')
    conn.close()
  })

  it('keeps C2D sequence numbers unique across a restart, even when the queue was empty', async () => {
    const dataDir = tempDir()
    try {
      let hub = await spawnHub(dataDir)
      const send = async () => (await hub.rest('POST', '/devices/seq-dev/messages/deviceBound', { n: 1 })).body.sequenceNumber as number
      await hub.rest('PUT', '/devices/seq-dev', { deviceId: 'seq-dev' })
      const first = await send()
      expect((await hub.rest('DELETE', '/devices/seq-dev/commands')).status).toBe(200) // the queue is empty again
      hub.child.kill('SIGTERM')
      await hub.exited
      hub = await spawnHub(dataDir)
      expect(await send()).toBeGreaterThan(first)
      hub.child.kill('SIGKILL')
      await hub.exited
    } finally {
      rmSync(dataDir, { recursive: true, force: true })
    }
  }, 60_000)
})

describe('routing', () => {
  it('drops, for that endpoint only, a message its enrichments push past 256 KB', async () => {
    await t.rest('PUT', '/routing/endpoints/logs/enriched', { body: {} })
    await t.rest('PUT', '/routing/enrichments/big', { body: { value: 'x'.repeat(4096), endpointNames: ['enriched'] } })
    await t.rest('PUT', '/routing/routes/to-enriched', { body: { condition: 'true', endpointNames: ['enriched', 'events'] } })
    const c = await connectDevice(t, 'enrich-big')
    await c.publish('devices/enrich-big/messages/events/%24.mid=too-big', Buffer.alloc(256 * 1024 - 2000), 1)
    await c.publish('devices/enrich-big/messages/events/%24.mid=fits', Buffer.alloc(100), 1)
    await c.disconnect()
    const ids = (path: string) => t.rest('GET', path).then((r) => (r.body.events as { systemProperties: Record<string, string> }[]).map((e) => e.systemProperties['message-id']))
    const p = (await import('../src/shard-protocol.js')).partitionOf('enrich-big', 4)
    expect(await ids(`/messages/endpoints/enriched/partitions/${p}/events?from=earliest`)).toEqual(['fits'])
    expect((await ids(`/messages/events/partitions/${p}/events?from=earliest`)).filter((m) => m === 'too-big' || m === 'fits')).toEqual(['too-big', 'fits'])
    await t.rest('DELETE', '/routing/routes/to-enriched')
    await t.rest('DELETE', '/routing/enrichments/big')
  })

  it('removes a deleted log endpoint\'s data with it', async () => {
    await t.rest('PUT', '/routing/endpoints/logs/shortlived', { body: {} })
    await t.rest('PUT', '/routing/routes/to-shortlived', { body: { condition: 'true', endpointNames: ['shortlived', 'events'] } })
    const c = await connectDevice(t, 'shortlived-dev')
    await c.publish('devices/shortlived-dev/messages/events/', 'x', 1)
    await c.disconnect()
    const p = (await import('../src/shard-protocol.js')).partitionOf('shortlived-dev', 4)
    expect((await t.rest('GET', `/messages/endpoints/shortlived/partitions/${p}`)).body.isEmpty).toBe(false)
    expect((await t.rest('PUT', '/messages/endpoints/shortlived/consumerGroups/readers')).status).toBe(200)
    await t.rest('DELETE', '/routing/routes/to-shortlived')
    expect((await t.rest('DELETE', '/routing/endpoints/logs/shortlived')).status).toBe(204)
    await t.rest('PUT', '/routing/endpoints/logs/shortlived', { body: {} })
    const again = (await t.rest('GET', `/messages/endpoints/shortlived/partitions/${p}`)).body
    expect(again).toMatchObject({ isEmpty: true, lastEnqueuedSequenceNumber: -1 })
    expect((await t.rest('GET', '/messages/endpoints/shortlived/consumerGroups')).body).toEqual([{ name: '$Default' }])
    await t.rest('DELETE', '/routing/endpoints/logs/shortlived')
  })
})

describe('what the hub does not offer yet', () => {
  it('over AMQP, a device\'s key does not sign for its module, and a device\'s token opens none of its module\'s links', async () => {
    const { primaryKey } = await t.createDevice('amqp-device')
    expect((await t.rest('PUT', '/devices/amqp-device/modules/m1?api-version=2021-04-12', { body: {} })).status).toBe(200)
    const conn = await amqpConnect(t.hub.ports.amqp!, t.ca)
    const replyTo = 'cbs-module'
    const receiver = conn.open_receiver({ source: { address: '$cbs' }, target: { address: replyTo } })
    const sender = conn.open_sender({ target: { address: '$cbs' } })
    await Promise.all([next(receiver, 'receiver_open'), next(sender, 'sendable')])
    const putToken = async (audience: string, key: string) => {
      const reply = next(receiver, 'message')
      sender.send({ reply_to: replyTo, message_id: replyTo, application_properties: { operation: 'put-token', type: 'servicebus.windows.net:sastoken', name: audience }, body: createSasToken(encodeURIComponent(audience), key) })
      const props = (await reply).message!.application_properties!
      return { status: props['status-code'], description: props['status-description'] }
    }
    expect(await putToken('localhost/devices/amqp-device/modules/m1', primaryKey)).toEqual({ status: 401, description: 'Unauthorized: signature does not match' })
    expect(await putToken('localhost/devices/amqp-device', primaryKey)).toMatchObject({ status: 200 })
    const link = conn.open_sender({ target: { address: '/devices/amqp-device/modules/m1/messages/events' } })
    const closed = await next(link, 'sender_close')
    expect((closed.sender as unknown as { remote: { detach: { error: rhea.AmqpError } } }).remote.detach.error).toMatchObject({
      condition: 'amqp:unauthorized-access', description: "Unauthorized access to '/devices/amqp-device/modules/m1/messages/events': put a token for module m1 of device amqp-device on $cbs first.",
    })
    conn.close()
  })
})
