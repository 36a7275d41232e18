// Reading the built-in endpoint: partitions, positions, consumer groups, checkpoints, and the
// WebSocket stream that pushes events as they commit.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { MqttTestClient } from './helpers/mqtt-test-client.js'
import { startTestHub, type TestHub } from './helpers/test-hub.js'
import type { ReadEvent } from './helpers/events.js'
import { partitionOf } from '../src/shard-protocol.js'

let t: TestHub
let device: MqttTestClient
const DEVICE = 'ep-dev'
let partition: number

beforeAll(async () => {
  t = await startTestHub({ shards: 2 })
  const { primaryKey } = await t.createDevice(DEVICE)
  device = (await MqttTestClient.connect({ port: t.hub.ports.mqttTcp!, clientId: DEVICE, password: t.deviceToken(DEVICE, primaryKey) })).client
  partition = partitionOf(DEVICE, 4)
})
afterAll(async () => {
  await device.disconnect()
  await t.stop()
})

const send = (n: number, tag: string) => (async () => {
  for (let i = 0; i < n; i++) await device.publish(`devices/${DEVICE}/messages/events/%24.mid=${tag}-${i}`, `${tag} ${i}`, 1)
})()

function openStream(query: string, headers: Record<string, string> = { Authorization: t.serviceToken('service') }): Promise<{ ws: WebSocket; events: ReadEvent[] }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`wss://localhost:${t.hub.ports.https}/messages/events/stream?${query}`, { ca: t.ca, headers })
    const events: ReadEvent[] = []
    ws.on('message', (data) => events.push(...(JSON.parse(data.toString()) as ReadEvent[])))
    ws.once('open', () => resolve({ ws, events }))
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode} ${res.headers['iothub-errorcode']}`)))
    ws.once('error', reject)
  })
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 20))
  }
}

describe('partitions and reads', () => {
  it('lists the 4 partitions with their sequence numbers', async () => {
    await send(3, 'list')
    const r = await t.rest('GET', '/messages/events/partitions', { token: t.serviceToken('service') })
    expect(r.status).toBe(200)
    expect(r.body.map((p: { partitionId: string }) => p.partitionId)).toEqual(['0', '1', '2', '3'])
    const mine = r.body[partition]
    expect(mine.isEmpty).toBe(false)
    expect(mine.lastEnqueuedSequenceNumber).toBeGreaterThanOrEqual(2)
    expect(Number(mine.lastEnqueuedOffset)).toBeGreaterThan(0)
  })

  it('reads from a sequence number and from an enqueued time', async () => {
    const info = (await t.rest('GET', `/messages/events/partitions/${partition}`)).body
    const startTime = new Date().toISOString()
    await new Promise((r) => setTimeout(r, 5))
    await send(2, 'time')
    const bySeq = (await t.rest('GET', `/messages/events/partitions/${partition}/events?fromSequenceNumber=${info.lastEnqueuedSequenceNumber + 1}`)).body
    expect(bySeq.events.map((e: ReadEvent) => e.systemProperties['message-id'])).toEqual(['time-0', 'time-1'])
    const byTime = (await t.rest('GET', `/messages/events/partitions/${partition}/events?fromEnqueuedTime=${startTime}`)).body
    expect(byTime.events.map((e: ReadEvent) => e.systemProperties['message-id'])).toEqual(['time-0', 'time-1'])
    const limited = (await t.rest('GET', `/messages/events/partitions/${partition}/events?from=earliest&maxCount=1`)).body
    expect(limited.events).toHaveLength(1)
    expect(limited.nextSequenceNumber).toBe(limited.events[0].sequenceNumber + 1)
  })

  it('rejects bad partitions, positions and rights', async () => {
    expect((await t.rest('GET', '/messages/events/partitions/9/events')).status).toBe(404)
    expect((await t.rest('GET', '/messages/events/partitions/x/events')).status).toBe(404)
    expect((await t.rest('GET', `/messages/events/partitions/${partition}/events?fromSequenceNumber=-1`)).status).toBe(400)
    expect((await t.rest('GET', `/messages/events/partitions/${partition}/events?fromEnqueuedTime=yesterday`)).status).toBe(400)
    expect((await t.rest('GET', `/messages/events/partitions/${partition}/events?maxCount=5000`)).status).toBe(400)
    expect((await t.rest('GET', `/messages/events/partitions/${partition}/events?consumerGroup=nope`)).status).toBe(404)
    expect((await t.rest('GET', '/messages/events/partitions', { token: t.serviceToken('registryReadWrite') })).status).toBe(401)
  })
})

describe('consumer groups and checkpoints', () => {
  it('a checkpoint makes the group resume after it', async () => {
    expect((await t.rest('PUT', '/messages/events/consumerGroups/analytics')).status).toBe(200)
    expect((await t.rest('GET', '/messages/events/consumerGroups')).body).toEqual([{ name: '$Default' }, { name: 'analytics' }])
    const first = (await t.rest('GET', `/messages/events/partitions/${partition}/events?consumerGroup=analytics&maxCount=2`)).body
    expect(first.events).toHaveLength(2)
    const cp = await t.rest('PUT', `/messages/events/consumerGroups/analytics/partitions/${partition}/checkpoint`, { body: { sequenceNumber: first.events[1].sequenceNumber } })
    expect(cp.status).toBe(200)
    expect(cp.body.sequenceNumber).toBe(first.events[1].sequenceNumber)
    const resumed = (await t.rest('GET', `/messages/events/partitions/${partition}/events?consumerGroup=analytics&maxCount=1`)).body
    expect(resumed.events[0].sequenceNumber).toBe(first.events[1].sequenceNumber + 1)
    // $Default has no checkpoint: it starts at the beginning
    const fresh = (await t.rest('GET', `/messages/events/partitions/${partition}/events?maxCount=1`)).body
    expect(fresh.events[0].sequenceNumber).toBe(first.events[0].sequenceNumber)
    expect((await t.rest('GET', `/messages/events/consumerGroups/analytics/partitions/${partition}/checkpoint`)).body.sequenceNumber).toBe(first.events[1].sequenceNumber)
  })

  it('refuses checkpoints past the end, bad names and deleting $Default', async () => {
    expect((await t.rest('PUT', `/messages/events/consumerGroups/analytics/partitions/${partition}/checkpoint`, { body: { sequenceNumber: 1e9 } })).status).toBe(400)
    expect((await t.rest('PUT', `/messages/events/consumerGroups/analytics/partitions/${partition}/checkpoint`, { body: { sequenceNumber: 'x' } })).status).toBe(400)
    expect((await t.rest('PUT', '/messages/events/consumerGroups/bad%20name')).status).toBe(400)
    expect((await t.rest('DELETE', '/messages/events/consumerGroups/$Default')).status).toBe(400)
    expect((await t.rest('DELETE', '/messages/events/consumerGroups/analytics')).status).toBe(204)
    expect((await t.rest('GET', `/messages/events/consumerGroups/analytics/partitions/${partition}/checkpoint`)).status).toBe(404)
  })
})

describe('the WebSocket stream', () => {
  it('pushes new events as they commit, from "latest" by default', async () => {
    const { ws, events } = await openStream('')
    await send(5, 'live')
    await until(() => events.filter((e) => e.systemProperties['message-id']?.startsWith('live-')).length === 5)
    expect(events.map((e) => e.systemProperties['message-id'])).toEqual(['live-0', 'live-1', 'live-2', 'live-3', 'live-4'])
    expect(Buffer.from(events[0]!.body, 'base64').toString()).toBe('live 0')
    ws.close()
  })

  it('replays from the earliest event of chosen partitions, then keeps pushing', async () => {
    const all = (await t.rest('GET', `/messages/events/partitions/${partition}/events?from=earliest&maxCount=1000`)).body.events as ReadEvent[]
    const { ws, events } = await openStream(`from=earliest&partitions=${partition}`)
    await until(() => events.length === all.length)
    await send(1, 'after-replay')
    await until(() => events.length === all.length + 1)
    expect(events.map((e) => e.sequenceNumber)).toEqual([...all.map((e) => e.sequenceNumber), all[all.length - 1]!.sequenceNumber + 1])
    ws.close()
  })

  it('accepts the token as a query parameter, and refuses a bad one', async () => {
    const { ws } = await openStream(`authorization=${encodeURIComponent(t.serviceToken('service'))}`, {})
    ws.close()
    await expect(openStream('', {})).rejects.toThrow('HTTP 401 IotHubUnauthorized')
    await expect(openStream('', { Authorization: t.serviceToken('registryRead') })).rejects.toThrow('HTTP 401')
    await expect(openStream('partitions=7')).rejects.toThrow('HTTP 404')
  })
})
