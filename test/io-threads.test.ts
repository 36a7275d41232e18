// Issue 20: MQTT connections on 3 I/O threads of a 2-core machine. Which thread accepts a
// connection is the kernel's choice; the hub logs it ('device connected', ioThread), and the tests
// connect until they have what they need (bounded), then check: a takeover between threads, and
// telemetry, twins, direct methods and C2D for devices spread over every thread.
import type mqttPacket from 'mqtt-packet'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connectDevice, nextPublish, twinRequest, until } from './helpers/device-mqtt.js'
import { eventsOf, readAllEvents } from './helpers/events.js'
import { logged } from './helpers/log-wait.js'
import type { MqttTestClient } from './helpers/mqtt-test-client.js'
import { startTestHub, type TestHub } from './helpers/test-hub.js'

const IO_THREADS = 3
const logRecords: Record<string, unknown>[] = []
let t: TestHub
beforeAll(async () => { t = await startTestHub({ ioThreads: IO_THREADS }, { logRecords }) })
afterAll(() => t.stop())

/** The I/O thread that holds the device's newest connection, from the hub's 'device connected' record. */
async function threadOf(deviceId: string, nth: number): Promise<number> {
  const mine = () => logRecords.filter((r) => r.msg === 'device connected' && r.deviceId === deviceId)
  expect(await logged(logRecords, () => mine().length >= nth)).toBe(true)
  return mine()[nth - 1]!.ioThread as number
}

const invoke = (deviceId: string, methodName: string, payload: unknown) =>
  t.rest('POST', `/twins/${deviceId}/methods?api-version=2021-04-12`, { body: { methodName, payload, responseTimeoutInSeconds: 10 } })

/** Answers every direct method call with status 200 and the call's payload. */
function echoMethods(c: MqttTestClient): void {
  c.socket.on('data', () => {
    for (const p of c.packets.splice(0)) {
      if (p.cmd !== 'publish' || !(p as mqttPacket.IPublishPacket).topic.startsWith('$iothub/methods/POST/')) continue
      const rid = /\?\$rid=(.+)$/.exec((p as mqttPacket.IPublishPacket).topic)![1]
      c.send({ cmd: 'publish', topic: `$iothub/methods/res/200/?$rid=${rid}`, payload: (p as mqttPacket.IPublishPacket).payload, qos: 0, retain: false, dup: false } as mqttPacket.IPublishPacket)
    }
  })
}

describe(`MQTT on ${IO_THREADS} I/O threads`, () => {
  it('takes over a client id from a connection on another thread: the old one closes, the new one keeps the session and gets C2D and methods', async () => {
    const first = await connectDevice(t, 'io-takeover', { clean: false })
    await first.subscribe('devices/io-takeover/messages/devicebound/#', 1)
    await first.subscribe('$iothub/methods/POST/#', 0)
    const firstThread = await threadOf('io-takeover', 1)
    // connect again until a connection lands on another thread (each one takes over the one before)
    let current = first
    let n = 1
    let thread = firstThread
    while (thread === firstThread && n < 30) {
      const previous = current
      current = await connectDevice(t, 'io-takeover', { clean: false })
      n++
      thread = await threadOf('io-takeover', n)
      await previous.closed // the hub closed the connection it replaced
    }
    expect(thread).not.toBe(firstThread)
    expect(await logged(logRecords, (r) => r.msg === 'connection closed' && r.deviceId === 'io-takeover' && r.reason === 'taken over by a new connection for the same client id')).toBe(true)
    expect((await t.rest('GET', '/devices/io-takeover')).body.connectionState).toBe('Connected')
    // the session was resumed on the new thread: C2D and method calls reach it without subscribing again
    echoMethods(current)
    const c2d = nextPublish(current, 'devices/io-takeover/messages/devicebound/')
    expect((await t.rest('POST', '/devices/io-takeover/messages/deviceBound?api-version=2021-04-12', { raw: 'after takeover' })).status).toBe(200)
    expect((await c2d).payload.toString()).toBe('after takeover')
    const call = await invoke('io-takeover', 'ping', { n: 1 })
    expect(call.body).toEqual({ status: 200, payload: { n: 1 } })
    expect(await current.publish('devices/io-takeover/messages/events/', 'on the new thread', 1)).toBeGreaterThan(0)
    await current.disconnect()
    expect(await logged(logRecords, () => t.hub.edge.connectionState('io-takeover').connected === false)).toBe(true)
  }, 60_000)

  it('serves telemetry, twins, methods and C2D for devices on every thread', async () => {
    const clients = new Map<string, MqttTestClient>()
    const threads = new Map<number, string>()
    // devices until every thread holds one (bounded)
    for (let i = 0; threads.size < IO_THREADS && i < 60; i++) {
      const id = `io-spread-${i}`
      const c = await connectDevice(t, id)
      const thread = await threadOf(id, 1)
      if (threads.has(thread)) { await c.disconnect(); continue }
      threads.set(thread, id)
      clients.set(id, c)
    }
    expect([...threads.keys()].sort()).toEqual([1, 2, 3])
    for (const [id, c] of clients) {
      await c.subscribe(`devices/${id}/messages/devicebound/#`, 1)
      await c.subscribe('$iothub/methods/POST/#', 0)
      await c.subscribe('$iothub/twin/res/#', 0)
      await c.subscribe('$iothub/twin/PATCH/properties/desired/#', 0)
      for (let m = 0; m < 5; m++) await c.publish(`devices/${id}/messages/events/%24.mid=${id}-${m}`, `telemetry ${m}`, 1)
      const reported = await twinRequest(c, '$iothub/twin/PATCH/properties/reported/?$rid=r1', JSON.stringify({ where: id }), 'r1')
      expect(reported.status).toBe(204)
      const desired = nextPublish(c, '$iothub/twin/PATCH/properties/desired/')
      expect((await t.rest('PATCH', `/twins/${id}?api-version=2021-04-12`, { body: { properties: { desired: { mode: id } } } })).status).toBe(200)
      expect(JSON.parse((await desired).payload.toString())).toMatchObject({ mode: id })
      const twin = await twinRequest(c, '$iothub/twin/GET/?$rid=g1', '', 'g1')
      expect(twin.body).toMatchObject({ desired: { mode: id }, reported: { where: id } })
      const c2d = nextPublish(c, `devices/${id}/messages/devicebound/`)
      expect((await t.rest('POST', `/devices/${id}/messages/deviceBound?api-version=2021-04-12`, { raw: `to ${id}` })).status).toBe(200)
      const delivered = await c2d
      expect(delivered.payload.toString()).toBe(`to ${id}`)
      c.send({ cmd: 'puback', messageId: delivered.messageId } as mqttPacket.IPubackPacket)
      echoMethods(c)
      expect((await invoke(id, 'where', { id })).body).toEqual({ status: 200, payload: { id } })
    }
    const events = await readAllEvents(t)
    for (const id of clients.keys()) {
      expect(eventsOf(events, id).map((e) => e.systemProperties['message-id'])).toEqual([0, 1, 2, 3, 4].map((m) => `${id}-${m}`))
      expect((await t.rest('GET', `/devices/${id}`)).body.connectionState).toBe('Connected')
    }
    // the completed C2D messages left their queues
    expect(await until(async () => Promise.all([...clients.keys()].map(async (id) => (await t.rest('GET', `/devices/${id}`)).body.cloudToDeviceMessageCount)), (counts) => counts.every((n) => n === 0))).toEqual([0, 0, 0])
    for (const c of clients.values()) await c.disconnect()
  }, 60_000)
})
