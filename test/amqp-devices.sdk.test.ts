// Issue 13 with the official SDKs, unchanged, on the standard ports: azure-iot-device over Amqp
// (5671) and AmqpWs (443, /$iothub/websocket), the same scenarios the MQTT transports run: telemetry
// read back in order with its properties, C2D complete/reject/abandon and the delivery count, twins,
// direct methods, token renewal on the open connection, refused credentials; and the back end over
// WebSocket: azure-iothub's Client over AmqpWs (C2D and feedback), EventHubConsumerClient with
// webSocketOptions.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { Client as DeviceClient, Message, type Twin } from 'azure-iot-device'
import { Amqp, AmqpWs } from 'azure-iot-device-amqp'
import { Mqtt } from 'azure-iot-device-mqtt'
import { AmqpWs as ServiceAmqpWs, Client as ServiceClient, Registry } from 'azure-iothub'
import { EventHubConsumerClient, type ReceivedEventData } from '@azure/event-hubs'
import { serviceConnectionString } from '../src/auth/policies.js'
import { createSasToken } from '../src/auth/sas-token.js'
import { startTestHub, type TestHub } from './helpers/test-hub.js'
import { eventsOf, readAllEvents, waitForEvents } from './helpers/events.js'
import { until } from './helpers/device-mqtt.js'

let t: TestHub
let registry: Registry
let ownerConnectionString: string
const logRecords: Record<string, unknown>[] = []

beforeAll(async () => {
  if (!process.env.NODE_EXTRA_CA_CERTS) throw new Error('run through `npm test`: the SDKs need NODE_EXTRA_CA_CERTS set at process start')
  t = await startTestHub({ mqttPort: 8883, httpsPort: 443, amqpPort: 5671, mqttTcpPort: null, shards: 2 }, { logRecords })
  ownerConnectionString = serviceConnectionString('localhost', t.hub.policies.find((p) => p.keyName === 'iothubowner')!)
  registry = Registry.fromConnectionString(ownerConnectionString)
})
afterAll(async () => { await t?.stop() })

const TRANSPORTS = [['Amqp', Amqp], ['AmqpWs', AmqpWs]] as const
type Transport = typeof Amqp | typeof AmqpWs

async function deviceClient(deviceId: string, transport: Transport | typeof Mqtt): Promise<DeviceClient> {
  const device = (await registry.create({ deviceId })).responseBody
  return DeviceClient.fromConnectionString(`HostName=localhost;DeviceId=${deviceId};SharedAccessKey=${device.authentication!.symmetricKey!.primaryKey}`, transport)
}

const connects = (deviceId: string) => logRecords.filter((r) => r.msg === 'device connected' && r.deviceId === deviceId)

function nextDesired(twin: Twin, key: string): Promise<Record<string, unknown>> {
  return new Promise((resolve) => {
    const on = (delta: Record<string, unknown>) => { if (key in delta) { twin.removeListener('properties.desired', on); resolve(delta) } }
    twin.on('properties.desired', on)
  })
}

async function feedbackOf(deviceId: string, count: number): Promise<string[]> {
  const seen: string[] = []
  await until(async () => {
    const r = await t.rest('GET', '/messages/serviceBound/feedback')
    if (r.status === 200) seen.push(...r.body.filter((f: { deviceId: string }) => f.deviceId === deviceId).map((f: { statusCode: string }) => f.statusCode))
    return seen.length
  }, (n) => n >= count, 10_000)
  return seen
}

describe.each(TRANSPORTS)('azure-iot-device over %s', (name, transport) => {
  const id = (what: string) => `sdk-${name.toLowerCase()}-${what}`

  it('sends messages with properties that a back end reads back in order, each settled after its commit', async () => {
    const deviceId = id('telemetry')
    const client = await deviceClient(deviceId, transport)
    await client.open()
    for (let i = 0; i < 20; i++) {
      const m = new Message(JSON.stringify({ n: i, via: name }))
      m.messageId = `msg-${i}`
      m.correlationId = `corr-${i}`
      m.contentType = 'application/json'
      m.contentEncoding = 'utf-8'
      m.properties.add('seq', String(i))
      m.properties.add('path/with&odd=chars', 'a b/c')
      await client.sendEvent(m)
      // settled means committed: the event is readable the moment sendEvent resolves
      if (i === 0) expect(eventsOf(await readAllEvents(t), deviceId)).toHaveLength(1)
    }
    await client.close()
    const device = (await registry.get(deviceId)).responseBody
    const events = eventsOf(await readAllEvents(t), deviceId)
    expect(events.map((e) => e.systemProperties['message-id'])).toEqual(Array.from({ length: 20 }, (_, i) => `msg-${i}`))
    events.forEach((e, i) => {
      expect(JSON.parse(Buffer.from(e.body, 'base64').toString())).toEqual({ n: i, via: name })
      expect(e.properties).toEqual({ seq: String(i), 'path/with&odd=chars': 'a b/c' })
      expect(e.systemProperties).toMatchObject({
        'correlation-id': `corr-${i}`, 'content-type': 'application/json', 'content-encoding': 'utf-8',
        'iothub-connection-device-id': deviceId, 'iothub-connection-auth-generation-id': device.generationId, 'iothub-message-source': 'Telemetry',
      })
    })
  })

  it('receives C2D: complete, reject and abandon act on the same queue as MQTT, and abandoning counts deliveries', async () => {
    const deviceId = id('c2d')
    const client = await deviceClient(deviceId, transport)
    const send = async (messageId: string) => {
      const r = await t.rest('POST', `/devices/${deviceId}/messages/deviceBound`, { raw: `body of ${messageId}`, headers: { 'iothub-messageid': messageId, 'iothub-ack': 'full', 'iothub-app-kind': 'a/b' } })
      expect(r.status).toBe(200)
    }
    for (const m of ['complete-me', 'reject-me', 'abandon-me']) await send(m)
    const seen: string[] = []
    let abandons = 0
    // one settlement at a time: the SDK's rhea (1.0.24) folds the first two dispositions written in
    // one turn into a range carrying the first's outcome, so a reject then an abandon would both reject
    let settling = Promise.resolve()
    client.on('message', (m: Message) => {
      seen.push(m.messageId)
      settling = settling.then(async () => {
        if (m.messageId === 'reject-me') await client.reject(m)
        else if (m.messageId === 'abandon-me') { abandons++; await client.abandon(m) } else await client.complete(m)
        // rhea 1.0.24 writes dispositions on the next tick: one turn later this one is on the wire
        await new Promise((r) => setImmediate(r))
      })
    })
    await client.open()
    // the abandoned message comes back until its delivery count reaches the hub's limit (10), then it is dead-lettered
    const feedback = await feedbackOf(deviceId, 3)
    expect(feedback.sort()).toEqual(['DeliveryCountExceeded', 'Rejected', 'Success'])
    expect(abandons).toBe(10)
    await send('marker')
    await until(() => seen.length, (n) => n >= 13, 10_000)
    expect(seen.filter((m) => m !== 'abandon-me')).toEqual(['complete-me', 'reject-me', 'marker'])
    expect(seen.at(-1)).toBe('marker')
    // the marker's completion is on its way when it is seen: the queue empties once the hub takes it
    await settling
    expect(await until(async () => Number((await registry.get(deviceId)).responseBody.cloudToDeviceMessageCount), (n) => n === 0)).toBe(0)
    await client.close()
  }, 30_000)

  it('gets the twin, reports properties and receives desired patches', async () => {
    const deviceId = id('twin')
    const client = await deviceClient(deviceId, transport)
    await client.open()
    const twin = await client.getTwin()
    expect(twin.properties.desired.$version).toBe(1)
    await new Promise<void>((resolve, reject) => twin.properties.reported.update({ temp: 21.5, fw: { version: '1.2' } }, (e?: Error) => (e ? reject(e) : resolve())))
    const got = (await registry.getTwin(deviceId)).responseBody
    expect(got.properties.reported).toMatchObject({ temp: 21.5, fw: { version: '1.2' }, $version: 2 })
    // the SDK asks for desired patches when a listener is added, and does not wait for the answer
    const delta = nextDesired(twin, 'rate')
    await until(() => logRecords.some((r) => r.msg === 'subscribed' && r.deviceId === deviceId && (r.filters as string[]).some((f) => f.startsWith('$iothub/twin/PATCH/'))), (ok) => ok)
    await registry.updateTwin(deviceId, { properties: { desired: { rate: 7 } } }, got.etag)
    expect(await delta).toMatchObject({ rate: 7, $version: 2 })
    expect(twin.properties.desired.rate).toBe(7)
    await expect(new Promise<void>((resolve, reject) => twin.properties.reported.update({ big: 'x'.repeat(4097) }, (e?: Error) => (e ? reject(e) : resolve())))).rejects.toThrow('could not update twin reported properties. reported.big: strings must be at most 4096 bytes')
    await client.close()
  })

  it('answers direct methods; 504 when the device does not answer', async () => {
    const deviceId = id('method')
    const client = await deviceClient(deviceId, transport)
    const service = ServiceClient.fromConnectionString(ownerConnectionString)
    await client.open()
    client.onDeviceMethod('reboot', (req, res) => { void res.send(200, { rebooting: true, input: req.payload }) })
    client.onDeviceMethod('silent', () => {})
    // the SDK attaches its method links after open resolves: wait until the hub can route a call
    await until(() => (t.hub.edge.methods as unknown as { target(id: string): unknown }).target(deviceId) !== undefined, (ok) => ok)
    const r = await service.invokeDeviceMethod(deviceId, { methodName: 'reboot', payload: { delay: 3 }, responseTimeoutInSeconds: 10 })
    expect(r.result).toEqual({ status: 200, payload: { rebooting: true, input: { delay: 3 } } })
    const many = await Promise.all(Array.from({ length: 10 }, (_, i) => service.invokeDeviceMethod(deviceId, { methodName: 'reboot', payload: i })))
    many.forEach((m, i) => expect(m.result.payload.input).toBe(i))
    await expect(service.invokeDeviceMethod(deviceId, { methodName: 'silent', payload: null, responseTimeoutInSeconds: 5 })).rejects.toMatchObject({ name: 'GatewayTimeoutError' })
    await client.close()
  }, 20_000)

  it('renews its token on the open connection and keeps working', async () => {
    const deviceId = id('renew')
    const client = await deviceClient(deviceId, transport)
    await client.setOptions({ tokenRenewal: { tokenValidTimeInSeconds: 3, tokenRenewalMarginInSeconds: 1 } })
    await client.open()
    const twin = await client.getTwin()
    const sent: string[] = []
    const renewals = () => logRecords.filter((r) => r.msg === 'amqp device token renewed' && r.deviceId === deviceId).length
    // 3-second tokens renewed a second before they end: messages keep going out, paced, across at
    // least two renewals (a pace, not a wait for something: every message must arrive)
    const deadline = Date.now() + 5000
    for (let i = 0; Date.now() < deadline; i++) {
      const m = new Message(`tick ${i}`)
      m.messageId = `renew-${i}`
      await client.sendEvent(m)
      sent.push(m.messageId)
      await new Promise((r) => setTimeout(r, 250))
    }
    const delta = nextDesired(twin, 'afterRenewal')
    await registry.updateTwin(deviceId, { properties: { desired: { afterRenewal: 1 } } }, '*')
    expect(await delta).toMatchObject({ afterRenewal: 1 })
    await client.close()
    expect(renewals()).toBeGreaterThanOrEqual(2)
    expect(connects(deviceId)).toHaveLength(1)
    const events = await waitForEvents(t, deviceId, sent.length)
    expect(events.map((e) => e.systemProperties['message-id'])).toEqual(sent)
  }, 20_000)

  it('refuses a wrong key, an expired token and an unknown device with UnauthorizedError', async () => {
    const deviceId = id('refused')
    const { primaryKey } = await t.createDevice(deviceId)
    const wrongKey = DeviceClient.fromConnectionString(`HostName=localhost;DeviceId=${deviceId};SharedAccessKey=${Buffer.alloc(32, 1).toString('base64')}`, transport)
    await expect(wrongKey.open()).rejects.toMatchObject({ name: 'UnauthorizedError' })
    const expired = DeviceClient.fromSharedAccessSignature(createSasToken(`localhost/devices/${deviceId}`, primaryKey, undefined, -400), transport)
    await expect(expired.open()).rejects.toMatchObject({ name: 'UnauthorizedError' })
    const unknown = DeviceClient.fromConnectionString(`HostName=localhost;DeviceId=${id('nobody')};SharedAccessKey=${primaryKey}`, transport)
    await expect(unknown.open()).rejects.toMatchObject({ name: 'UnauthorizedError' })
    expect(t.hub.edge.connectionState(deviceId).connected).toBe(false)
  })
})

describe('one connection per device across protocols', () => {
  it('an AMQP connection takes over from MQTT, and MQTT back from AMQP', async () => {
    const deviceId = 'sdk-amqp-takeover'
    const device = (await registry.create({ deviceId })).responseBody
    const cs = `HostName=localhost;DeviceId=${deviceId};SharedAccessKey=${device.authentication!.symmetricKey!.primaryKey}`
    const takenOver = (transport: string) => until(() => logRecords.filter((r) => r.msg === 'connection closed' && r.deviceId === deviceId
      && r.transport === transport && String(r.reason).startsWith('taken over')).length, (n) => n > 0)
    const overMqtt = DeviceClient.fromConnectionString(cs, Mqtt)
    await overMqtt.open()
    const overAmqp = DeviceClient.fromConnectionString(cs, Amqp)
    await overAmqp.open()
    await takenOver('tls')
    const m = new Message('after takeover')
    m.messageId = 'takeover-1'
    await overAmqp.sendEvent(m)
    const again = DeviceClient.fromConnectionString(cs, Mqtt)
    await again.open()
    await takenOver('amqps')
    expect(connects(deviceId).map((r) => r.transport)).toEqual(['tls', 'amqps', 'tls'])
    await again.close()
    await Promise.allSettled([overMqtt.close(), overAmqp.close()])
    expect(eventsOf(await readAllEvents(t), deviceId).map((e) => e.systemProperties['message-id'])).toEqual(['takeover-1'])
  }, 20_000)
})

describe('back ends over AMQP on WebSocket (443)', () => {
  it('azure-iothub Client over AmqpWs sends C2D and reads its feedback', async () => {
    const deviceId = 'sdk-service-ws'
    const device = await deviceClient(deviceId, Amqp)
    const got = new Promise<Message>((resolve) => device.on('message', (m: Message) => { void device.complete(m); resolve(m) }))
    await device.open()
    const service = ServiceClient.fromConnectionString(ownerConnectionString, ServiceAmqpWs)
    await service.open()
    const receiver = await new Promise<{ on(e: 'message', f: (m: Message) => void): void }>((resolve, reject) => {
      service.getFeedbackReceiver((err, r) => (err ? reject(err) : resolve(r as never)))
    })
    // records of earlier tests' devices may come first
    const feedback = new Promise<Record<string, unknown>[]>((resolve) => receiver.on('message', (f: Message) => {
      const mine = (JSON.parse(f.data.toString()) as Record<string, unknown>[]).filter((r) => r.deviceId === deviceId)
      if (mine.length > 0) resolve(mine)
    }))
    const m = new Message('from the back end')
    m.messageId = 'svc-ws-1'
    m.ack = 'full'
    await service.send(deviceId, m)
    const received = await got
    expect({ id: received.messageId, body: received.data.toString() }).toEqual({ id: 'svc-ws-1', body: 'from the back end' })
    expect(await feedback).toEqual([expect.objectContaining({ originalMessageId: 'svc-ws-1', deviceId, statusCode: 'Success' })])
    await expect(service.send('sdk-nobody-here', new Message('x'))).rejects.toMatchObject({ name: 'DeviceNotFoundError' })
    await service.close()
    await device.close()
  }, 20_000)

  it('EventHubConsumerClient with webSocketOptions reads the built-in endpoint', async () => {
    const deviceId = 'sdk-eh-ws'
    const device = await deviceClient(deviceId, AmqpWs)
    await device.open()
    const m = new Message('for event hubs')
    m.messageId = 'eh-ws-1'
    m.properties.add('k', 'v')
    await device.sendEvent(m)
    await device.close()
    const cs = `Endpoint=sb://localhost:443/;SharedAccessKeyName=iothubowner;SharedAccessKey=${t.policyKey('iothubowner')};EntityPath=${t.hub.eventHubName}`
    const consumer = new EventHubConsumerClient('$Default', cs, { webSocketOptions: { webSocket: WebSocket as never } })
    expect((await consumer.getPartitionIds()).length).toBe(4)
    const event = await new Promise<ReceivedEventData>((resolve, reject) => {
      const sub = consumer.subscribe({
        processEvents: async (events) => {
          const mine = events.find((e) => e.systemProperties?.['iothub-connection-device-id'] === deviceId)
          if (mine) { resolve(mine); await sub.close() }
        },
        processError: async (e) => reject(e),
      }, { startPosition: { sequenceNumber: -1 }, maxBatchSize: 50 })
    })
    expect({ id: event.messageId, body: Buffer.from(event.body as Uint8Array).toString(), props: event.properties }).toEqual({ id: 'eh-ws-1', body: 'for event hubs', props: { k: 'v' } })
    await consumer.close()
  }, 20_000)
})
