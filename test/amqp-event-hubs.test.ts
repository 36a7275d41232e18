// The built-in endpoint through the official Event Hubs client over AMQP (TLS, CBS), as a back end
// written for Azure reads it: properties, every start position, live tail, owner levels, errors.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { EventHubConsumerClient, type ReceivedEventData, type SubscriptionEventHandlers } from '@azure/event-hubs'
import { AzureSASCredential } from '@azure/core-auth'
import { createSasToken } from '../src/auth/sas-token.js'
import { MqttTestClient } from './helpers/mqtt-test-client.js'
import { startTestHub, type TestHub } from './helpers/test-hub.js'
import { partitionOf } from '../src/shard-protocol.js'
import { Client as DeviceClient, Message } from 'azure-iot-device'
import { Mqtt } from 'azure-iot-device-mqtt'

let t: TestHub
let device: MqttTestClient
const DEVICE = 'eh-dev'
let partition: string
const clients: EventHubConsumerClient[] = []

beforeAll(async () => {
  if (!process.env.NODE_EXTRA_CA_CERTS) throw new Error('run through `npm test` (NODE_EXTRA_CA_CERTS)')
  t = await startTestHub({ shards: 2 })
  const { primaryKey } = await t.createDevice(DEVICE)
  device = (await MqttTestClient.connect({ port: t.hub.ports.mqttTcp!, clientId: DEVICE, password: t.deviceToken(DEVICE, primaryKey) })).client
  partition = String(partitionOf(DEVICE, 4))
})
afterAll(async () => {
  for (const c of clients) await c.close()
  await device.disconnect()
  await t.stop()
})

function connectionString(policy = 'service', key = t.policyKey(policy)): string {
  return `Endpoint=sb://localhost:${t.hub.ports.amqp}/;SharedAccessKeyName=${policy};SharedAccessKey=${key};EntityPath=${t.hub.eventHubName}`
}

function consumer(group = '$Default', cs = connectionString()): EventHubConsumerClient {
  const c = new EventHubConsumerClient(group, cs, { retryOptions: { maxRetries: 0, timeoutInMs: 10_000 } })
  clients.push(c)
  return c
}

async function send(n: number, tag: string): Promise<void> {
  for (let i = 0; i < n; i++) {
    await device.publish(`devices/${DEVICE}/messages/events/%24.mid=${tag}-${i}&%24.ct=application%2Fjson&%24.ce=utf-8&kind=${tag}`, JSON.stringify({ tag, i }), 1)
  }
}

/** Collects events of one partition until `count` arrived (or an error/timeout). */
function collect(client: EventHubConsumerClient, count: number, options: Parameters<EventHubConsumerClient['subscribe']>[2] = {}): Promise<ReceivedEventData[]> {
  return new Promise((resolve, reject) => {
    const got: ReceivedEventData[] = []
    const timer = setTimeout(() => { void sub.close(); reject(new Error(`only ${got.length}/${count} events`)) }, 15_000)
    const handlers: SubscriptionEventHandlers = {
      processEvents: async (events) => {
        got.push(...events)
        if (got.length >= count) { clearTimeout(timer); await sub.close(); resolve(got) }
      },
      processError: async (err) => { clearTimeout(timer); await sub.close(); reject(err) },
    }
    const sub = client.subscribe(partition, handlers, { maxBatchSize: 100, maxWaitTimeInSeconds: 1, ...options })
  })
}

describe('EventHubConsumerClient against the built-in endpoint', () => {
  it('reads the hub and partition properties through $management', async () => {
    await send(3, 'props')
    const c = consumer()
    const hub = await c.getEventHubProperties()
    expect(hub.name).toBe(t.hub.eventHubName)
    expect(hub.partitionIds).toEqual(['0', '1', '2', '3'])
    const p = await c.getPartitionProperties(partition)
    expect(p).toMatchObject({ partitionId: partition, isEmpty: false, beginningSequenceNumber: 0 })
    expect(p.lastEnqueuedSequenceNumber).toBeGreaterThanOrEqual(2)
    expect(Number(p.lastEnqueuedOffset)).toBeGreaterThan(0)
    expect(p.lastEnqueuedOnUtc.getTime()).toBeGreaterThan(Date.now() - 60_000)
  })

  it('delivers telemetry from the earliest event with body, properties and IoT Hub system properties', async () => {
    const events = await collect(consumer(), 3, { startPosition: { offset: '-1' } as never })
    const e = events.find((x) => x.messageId === 'props-0')!
    expect(e).toBeDefined()
    expect(e.body).toEqual({ tag: 'props', i: 0 })
    expect(e.properties).toEqual({ kind: 'props' })
    expect(e.contentType).toBe('application/json')
    expect(e.sequenceNumber).toBe(0)
    expect(e.offset).toBe('0')
    expect(e.partitionKey).toBe(DEVICE)
    expect(e.systemProperties).toMatchObject({ 'iothub-connection-device-id': DEVICE, 'iothub-message-source': 'Telemetry' })
    expect(JSON.parse(String(e.systemProperties!['iothub-connection-auth-method']))).toMatchObject({ scope: 'device', type: 'sas' })
  })

  it('honours sequence-number, offset and enqueued-time start positions', async () => {
    const all = await collect(consumer(), 3, { startPosition: { sequenceNumber: 0, isInclusive: true } })
    const [first, second, third] = all
    const afterFirst = await collect(consumer(), 2, { startPosition: { sequenceNumber: first!.sequenceNumber, isInclusive: false } })
    expect(afterFirst[0]!.sequenceNumber).toBe(second!.sequenceNumber)
    const fromOffset = await collect(consumer(), 1, { startPosition: { offset: third!.offset, isInclusive: true } })
    expect(fromOffset[0]!.sequenceNumber).toBe(third!.sequenceNumber)
    const byTime = await collect(consumer(), 1, { startPosition: { enqueuedOn: new Date(first!.enqueuedTimeUtc.getTime() - 1000) } })
    expect(byTime[0]!.sequenceNumber).toBe(first!.sequenceNumber)
  })

  it('tails live events from "latest"', async () => {
    const c = consumer()
    const live = collect(c, 5, { startPosition: { offset: '@latest' } as never })
    await new Promise((r) => setTimeout(r, 1000))
    await send(5, 'live')
    const events = await live
    expect(events.map((e) => e.messageId)).toEqual(['live-0', 'live-1', 'live-2', 'live-3', 'live-4'])
  })

  it('reads what official-SDK devices send, from every partition', async () => {
    const ids = Array.from({ length: 8 }, (_, i) => `eh-sdk-${i}`)
    expect(new Set(ids.map((id) => partitionOf(id, 4))).size).toBeGreaterThan(1)
    for (const id of ids) {
      const { primaryKey } = await t.createDevice(id)
      // the device SDK honours a port in HostName (sdk-compat.md §1.1)
      const d = DeviceClient.fromConnectionString(`HostName=localhost:${t.hub.ports.mqtt};DeviceId=${id};SharedAccessKey=${primaryKey}`, Mqtt)
      await d.open()
      const m = new Message(JSON.stringify({ from: id }))
      m.messageId = `all-${id}`
      m.properties.add('sdk', 'yes')
      await d.sendEvent(m)
      await d.close()
    }
    const seen = new Map<string, ReceivedEventData>()
    const c = consumer()
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`only ${seen.size}/8`)), 30_000)
      const sub = c.subscribe({
        processEvents: async (events) => {
          for (const e of events) if (String(e.messageId).startsWith('all-')) seen.set(String(e.messageId), e)
          if (seen.size === ids.length) { clearTimeout(timer); await sub.close(); resolve() }
        },
        processError: async () => {},
      }, { startPosition: { offset: '-1' } as never, maxBatchSize: 100, maxWaitTimeInSeconds: 1 })
    })
    for (const id of ids) {
      const e = seen.get(`all-${id}`)!
      expect(e.body).toEqual({ from: id })
      expect(e.properties).toEqual({ sdk: 'yes' })
      expect(e.systemProperties!['iothub-connection-device-id']).toBe(id)
    }
  }, 60_000)

  it('a receiver with a higher owner level takes the partition', async () => {
    const first = consumer()
    const errors: Error[] = []
    const sub = first.subscribe(partition, { processEvents: async () => {}, processError: async (e) => { errors.push(e) } }, { ownerLevel: 1, startPosition: { offset: '@latest' } as never })
    await new Promise((r) => setTimeout(r, 1500))
    const second = await collect(consumer(), 1, { ownerLevel: 2, startPosition: { offset: '-1' } as never })
    expect(second.length).toBeGreaterThanOrEqual(1)
    for (let i = 0; i < 50 && errors.length === 0; i++) await new Promise((r) => setTimeout(r, 100))
    expect(errors.some((e) => (e as { code?: string }).code === 'ReceiverDisconnectedError')).toBe(true)
    await sub.close()
  })

  it('refuses a wrong key, an unknown consumer group and an unknown partition', async () => {
    await expect(consumer('$Default', connectionString('service', Buffer.alloc(32, 1).toString('base64'))).getEventHubProperties())
      .rejects.toMatchObject({ code: 'UnauthorizedError', message: 'Unauthorized: signature does not match' })
    await expect(collect(consumer('nosuchgroup'), 1)).rejects.toMatchObject({ code: 'MessagingEntityNotFoundError' })
    await expect(consumer().getPartitionProperties('9')).rejects.toMatchObject({ message: 'partition 9 does not exist' })
    // an entity that is not this hub's built-in endpoint
    await expect(consumer('$Default', connectionString().replace(/EntityPath=.*/, 'EntityPath=otherhub')).getEventHubProperties())
      .rejects.toMatchObject({ code: 'UnauthorizedError', message: 'Unauthorized: no token with ServiceConnect' })
    // an expired token (past Azure's 5-minute skew)
    const audience = `sb://localhost:${t.hub.ports.amqp}/${t.hub.eventHubName}`
    const expired = new EventHubConsumerClient('$Default', `localhost:${t.hub.ports.amqp}`, t.hub.eventHubName,
      new AzureSASCredential(createSasToken(encodeURIComponent(audience), t.policyKey('service'), 'service', -400)), { retryOptions: { maxRetries: 0, timeoutInMs: 10_000 } })
    clients.push(expired)
    await expect(expired.getEventHubProperties()).rejects.toMatchObject({ code: 'UnauthorizedError', message: 'Unauthorized: token expired' })
    const fresh = new EventHubConsumerClient('$Default', `localhost:${t.hub.ports.amqp}`, t.hub.eventHubName,
      new AzureSASCredential(createSasToken(encodeURIComponent(audience), t.policyKey('service'), 'service', 600)), { retryOptions: { maxRetries: 0, timeoutInMs: 10_000 } })
    clients.push(fresh)
    expect((await fresh.getEventHubProperties()).partitionIds).toHaveLength(4)
    // a policy without ServiceConnect cannot read
    await expect(consumer('$Default', connectionString('registryRead')).getEventHubProperties())
      .rejects.toMatchObject({ code: 'UnauthorizedError', message: 'Unauthorized: no token with ServiceConnect' })
  })

  it('a hub stops while Event Hubs clients are still attached', async () => {
    const other = await startTestHub()
    const c = new EventHubConsumerClient('$Default', `Endpoint=sb://localhost:${other.hub.ports.amqp}/;SharedAccessKeyName=service;SharedAccessKey=${other.policyKey('service')};EntityPath=${other.hub.eventHubName}`,
      { retryOptions: { maxRetries: 0, timeoutInMs: 5000 } })
    const sub = c.subscribe('0', { processEvents: async () => {}, processError: async () => {} }, { startPosition: { offset: '@latest' } as never })
    await c.getEventHubProperties()
    // before this was fixed the listener waited for the client forever and stop() never returned
    await other.stop()
    await sub.close().catch(() => {})
    await c.close().catch(() => {})
  })
})
