// Device telemetry over MQTT (TCP and TLS) into the built-in endpoint, with 1 and with 2 shards, and
// with the WASM and the JS framer.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MqttTestClient } from './helpers/mqtt-test-client.js'
import { startTestHub, type TestHub } from './helpers/test-hub.js'
import { eventsOf, readAllEvents, waitForEvents } from './helpers/events.js'

describe.each([
  { shards: 1, mqttFramer: 'wasm' as const }, { shards: 2, mqttFramer: 'wasm' as const }, { shards: 1, mqttFramer: 'js' as const },
])('telemetry with $shards shard(s), $mqttFramer framer', ({ shards, mqttFramer }) => {
  let t: TestHub
  beforeAll(async () => { t = await startTestHub({ shards, mqttFramer }) })
  afterAll(async () => { await t.stop() })

  const connect = async (deviceId: string, opts: { tls?: boolean; clean?: boolean } = {}) => {
    const { primaryKey } = t.hub.registry.get(deviceId)
      ? { primaryKey: t.hub.registry.get(deviceId)!.authentication.symmetricKey.primaryKey! }
      : await t.createDevice(deviceId)
    const r = await MqttTestClient.connect({
      port: opts.tls ? t.hub.ports.mqtt : t.hub.ports.mqttTcp!, tls: opts.tls ? { ca: t.ca } : undefined,
      clientId: deviceId, password: t.deviceToken(deviceId, primaryKey), clean: opts.clean,
    })
    expect(r.connack.returnCode).toBe(0)
    return r.client
  }

  it('stores QoS 1 telemetry with system and application properties before the PUBACK', async () => {
    const client = await connect('tel-props', { tls: true })
    const topic = 'devices/tel-props/messages/events/%24.mid=mid-1&%24.cid=cid-1&%24.uid=user-1&%24.ct=application%2Fjson&%24.ce=utf-8'
      + '&%24.exp=2030-01-01T00%3A00%3A00.000Z&alert=high%20temp&unit%2Fx=a%26b%3Dc&%24.sub=thermostat1'
    await client.publish(topic, '{"t":21.5}', 1)
    // acknowledged means committed: readable at once, no polling
    const [event] = eventsOf(await readAllEvents(t), 'tel-props')
    expect(event).toBeDefined()
    expect(Buffer.from(event!.body, 'base64').toString()).toBe('{"t":21.5}')
    expect(event!.properties).toEqual({ alert: 'high temp', 'unit/x': 'a&b=c' })
    const device = t.hub.registry.get('tel-props')!
    expect(event!.systemProperties).toMatchObject({
      'message-id': 'mid-1', 'correlation-id': 'cid-1', 'user-id': 'user-1', 'content-type': 'application/json',
      'content-encoding': 'utf-8', 'absolute-expiry-time': '2030-01-01T00:00:00.000Z', 'dt-subject': 'thermostat1',
      'iothub-connection-device-id': 'tel-props', 'iothub-connection-auth-generation-id': device.generationId,
      'iothub-message-source': 'Telemetry',
    })
    expect(JSON.parse(event!.systemProperties['iothub-connection-auth-method']!)).toEqual({ scope: 'device', type: 'sas', issuer: 'iothub', acceptingIpFilterRule: null })
    expect(Date.parse(event!.systemProperties['iothub-enqueuedtime']!)).toBeGreaterThan(Date.now() - 60_000)
    await client.disconnect()
  })

  it('keeps each device\'s messages in order in one partition', async () => {
    const clients = await Promise.all(['ord-a', 'ord-b', 'ord-c'].map((id) => connect(id)))
    await Promise.all(clients.map(async (c, i) => {
      for (let n = 0; n < 50; n++) await c.publish(`devices/ord-${'abc'[i]}/messages/events/%24.mid=${n}`, `m${n}`, 1)
    }))
    const events = await readAllEvents(t)
    for (const id of ['ord-a', 'ord-b', 'ord-c']) {
      const mine = eventsOf(events, id)
      expect(mine.map((e) => e.systemProperties['message-id'])).toEqual(Array.from({ length: 50 }, (_, n) => String(n)))
      expect(new Set(mine.map((e) => e.partitionId)).size).toBe(1)
      const seqs = mine.map((e) => e.sequenceNumber)
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b))
    }
    await Promise.all(clients.map((c) => c.disconnect()))
  })

  it('stores QoS 0 telemetry too, and flags retained messages', async () => {
    const client = await connect('tel-qos0')
    await client.publish('devices/tel-qos0/messages/events/', 'zero', 0)
    client.send({ cmd: 'publish', topic: 'devices/tel-qos0/messages/events/k=v', payload: Buffer.from('kept?'), qos: 1, retain: true, dup: false, messageId: 9 })
    await client.next('puback')
    const events = await waitForEvents(t, 'tel-qos0', 2)
    expect(events.map((e) => Buffer.from(e.body, 'base64').toString())).toEqual(['zero', 'kept?'])
    expect(events[1]!.properties).toEqual({ k: 'v', 'mqtt-retain': 'true' })
    await client.disconnect()
  })

  it('marks the device connected, and tracks activity', async () => {
    const client = await connect('tel-presence')
    const on = (await t.rest('GET', '/devices/tel-presence')).body
    expect(on.connectionState).toBe('Connected')
    expect(on.lastActivityTime).not.toBe('0001-01-01T00:00:00')
    await client.disconnect()
    let off = (await t.rest('GET', '/devices/tel-presence')).body
    for (let i = 0; i < 100 && off.connectionState !== 'Disconnected'; i++) {
      await new Promise((r) => setTimeout(r, 20))
      off = (await t.rest('GET', '/devices/tel-presence')).body
    }
    expect(off.connectionState).toBe('Disconnected')
    expect(Date.parse(off.connectionStateUpdatedTime)).toBeGreaterThanOrEqual(Date.parse(on.connectionStateUpdatedTime))
  })
})
