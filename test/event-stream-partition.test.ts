// The event stream's `devicePartition=<deviceId>` (events/event-stream.ts): the stream reads only the
// partition that device's events land on, so a page following one device is not sent every other
// device's events. An empty value, or one given with `partitions=`, is a 400 in Azure's error format.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { startTestHub, type TestHub } from './helpers/test-hub.js'
import { connectDevice } from './helpers/device-mqtt.js'
import type { MqttTestClient } from './helpers/mqtt-test-client.js'
import type { ReadEvent } from './helpers/events.js'
import { partitionOf } from '../src/shard-protocol.js'

const PARTITIONS = 4
const MINE = 'follow-me'
let t: TestHub
let mine: MqttTestClient
let other: MqttTestClient
/** a device whose events land on another partition than MINE's */
let OTHER = ''

beforeAll(async () => {
  t = await startTestHub({ partitions: PARTITIONS })
  for (let i = 0; OTHER === ''; i++) if (partitionOf(`other-${i}`, PARTITIONS) !== partitionOf(MINE, PARTITIONS)) OTHER = `other-${i}`
  mine = await connectDevice(t, MINE)
  other = await connectDevice(t, OTHER)
})
afterAll(async () => {
  await mine?.disconnect()
  await other?.disconnect()
  await t?.stop()
})

const deviceOf = (e: ReadEvent) => e.systemProperties['iothub-connection-device-id']

function openStream(query: string): Promise<{ ws: WebSocket; events: ReadEvent[]; until(f: (e: ReadEvent) => boolean): Promise<void> }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`wss://localhost:${t.hub.ports.https}/messages/events/stream?${query}`, { ca: t.ca, headers: { Authorization: t.serviceToken('service') } })
    const events: ReadEvent[] = []
    const waiting = new Set<{ f: (e: ReadEvent) => boolean; done: () => void }>()
    ws.on('message', (data) => {
      for (const e of JSON.parse(data.toString()) as ReadEvent[]) {
        events.push(e)
        for (const w of waiting) if (w.f(e)) { waiting.delete(w); w.done() }
      }
    })
    const until = (f: (e: ReadEvent) => boolean) => (events.some(f) ? Promise.resolve() : new Promise<void>((done) => waiting.add({ f, done })))
    ws.once('open', () => resolve({ ws, events, until }))
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)))
    ws.once('error', reject)
  })
}

/** The answer to an upgrade the hub refuses: status, error code and body. */
function refusal(query: string): Promise<{ status: number; code: unknown; message: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`wss://localhost:${t.hub.ports.https}/messages/events/stream?${query}`, { ca: t.ca, headers: { Authorization: t.serviceToken('service') } })
    ws.once('open', () => { ws.close(); reject(new Error(`the stream opened for ${query}`)) })
    ws.once('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode!, code: res.headers['iothub-errorcode'], message: JSON.parse(Buffer.concat(chunks).toString()).Message }))
    })
    ws.once('error', () => {})
  })
}

describe('devicePartition=', () => {
  it('reads only the partition the device\'s events land on: another partition\'s events never arrive', async () => {
    const followed = await openStream(`devicePartition=${encodeURIComponent(MINE)}&from=latest`)
    // a reader of every partition sees the other device's events, so they were sent
    const everything = await openStream('from=latest')
    try {
      for (let i = 0; i < 5; i++) await other.publish(`devices/${OTHER}/messages/events/`, `other ${i}`, 1)
      await everything.until((e) => deviceOf(e) === OTHER && Buffer.from(e.body, 'base64').toString() === 'other 4')
      await mine.publish(`devices/${MINE}/messages/events/`, 'marker', 1)
      await followed.until((e) => Buffer.from(e.body, 'base64').toString() === 'marker')
      expect(followed.events.map((e) => ({ device: deviceOf(e), partition: e.partitionId, body: Buffer.from(e.body, 'base64').toString() })))
        .toEqual([{ device: MINE, partition: String(partitionOf(MINE, PARTITIONS)), body: 'marker' }])
    } finally {
      followed.ws.close()
      everything.ws.close()
    }
  })

  it('refuses an empty value, or one given with partitions=, with 400 in Azure\'s error format', async () => {
    for (const query of ['devicePartition=', `devicePartition=${MINE}&partitions=0`, `partitions=0&devicePartition=${MINE}`]) {
      const r = await refusal(query)
      expect({ query, status: r.status, code: r.code, message: /^ErrorCode:ArgumentInvalid;devicePartition /.test(r.message) })
        .toEqual({ query, status: 400, code: 'ArgumentInvalid', message: true })
    }
  })
})
