// Issue 10 item 1: a WebSocket stream reader that falls behind gets every event exactly once, in
// order, on the real hub process: the hub stops pushing while the reader's socket is full and
// resumes from the first event it has not sent (uWS drops sends past its backpressure limit, and a
// dropped send must not count as sent).
import { rmSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import type net from 'node:net'
import { createSasToken } from '../src/auth/sas-token.js'
import { MqttTestClient } from './helpers/mqtt-test-client.js'
import { spawnHub, type HubProcess } from './helpers/hub-process.js'
import { tempDir } from './helpers/test-hub.js'
import type { ReadEvent } from './helpers/events.js'

const DEVICES = 4
let hub: HubProcess
let dataDir: string
const devices: { id: string; client: MqttTestClient }[] = []

beforeAll(async () => {
  dataDir = tempDir()
  hub = await spawnHub(dataDir, ['--shards', '2'])
  for (let d = 0; d < DEVICES; d++) {
    const id = `stream-bp-${d}`
    const r = await hub.rest('PUT', `/devices/${id}`, { deviceId: id })
    const token = createSasToken(encodeURIComponent(`localhost/devices/${id}`), r.body.authentication.symmetricKey.primaryKey)
    const { client } = await MqttTestClient.connect({ port: hub.ports.mqttTcp, clientId: id, password: token })
    devices.push({ id, client })
  }
}, 60_000)

afterAll(async () => {
  for (const d of devices) d.client.destroy()
  hub?.child.kill('SIGKILL')
  await hub?.exited
  rmSync(dataDir, { recursive: true, force: true })
})

/** QoS 1 from every device, `count` messages in all, a window of 20 in flight each; resolves with the acked message ids. */
async function publish(count: number, tag: string, bodyBytes = 200): Promise<string[]> {
  const acked: string[] = []
  await Promise.all(devices.map(async ({ id, client }, d) => {
    const mine = Array.from({ length: Math.ceil(count / DEVICES) }, (_, i) => `${tag}-${d}-${i}`)
    let next = 0
    await Promise.all(Array.from({ length: 20 }, async () => {
      while (next < mine.length) {
        const mid = mine[next++]!
        await client.publish(`devices/${id}/messages/events/%24.mid=${mid}`, Buffer.alloc(bodyBytes, 7), 1)
        acked.push(mid)
      }
    }))
  }))
  return acked
}

interface Reader { ws: WebSocket; events: ReadEvent[]; socket: net.Socket }

function openReader(query: string, onFrame?: (r: Reader) => void): Promise<Reader> {
  return new Promise((resolve, reject) => {
    const token = createSasToken('localhost', hub.ownerKey, 'iothubowner')
    const ws = new WebSocket(`wss://localhost:${hub.ports.https}/messages/events/stream?${query}`, { ca: hub.ca, headers: { Authorization: token } })
    const reader: Reader = { ws, events: [], socket: undefined as unknown as net.Socket }
    ws.on('message', (data) => {
      reader.events.push(...(JSON.parse(data.toString()) as ReadEvent[]))
      onFrame?.(reader)
    })
    ws.once('open', () => {
      reader.socket = (ws as unknown as { _socket: net.Socket })._socket
      resolve(reader)
    })
    ws.once('error', reject)
  })
}

/** Waits (bounded) until the reader holds every id in `ids`. */
async function until(reader: Reader, ids: string[], ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms
  const wanted = new Set(ids)
  for (;;) {
    for (const e of reader.events) wanted.delete(e.systemProperties['message-id']!)
    if (wanted.size === 0) return
    if (Date.now() > deadline) throw new Error(`${wanted.size} of ${ids.length} events never arrived (got ${reader.events.length})`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** Every event once, and per partition consecutive sequence numbers from the first one read. */
function expectExactlyOnceInOrder(events: ReadEvent[], expected: string[]): void {
  const ids = events.map((e) => e.systemProperties['message-id']!)
  expect(new Set(ids).size).toBe(ids.length)
  expect([...ids].sort()).toEqual([...expected].sort())
  const byPartition = new Map<string, number[]>()
  for (const e of events) byPartition.set(e.partitionId, [...(byPartition.get(e.partitionId) ?? []), e.sequenceNumber])
  for (const seqs of byPartition.values()) expect(seqs).toEqual(seqs.map((_, i) => seqs[0]! + i))
}

describe('a stream reader that falls behind', () => {
  it('paused while 6,000 messages are acked: gets every event once, in order, after it resumes', async () => {
    const reader = await openReader('from=latest')
    reader.socket.pause() // stops reading: the hub's socket to it fills up
    const acked = await publish(6000, 'paused')
    const markers = await publish(DEVICES, 'paused-marker')
    reader.socket.resume()
    await until(reader, markers)
    expectExactlyOnceInOrder(reader.events, [...acked, ...markers])
    reader.ws.close()
  }, 90_000)

  it('slow (20 ms per frame) while replaying from earliest and while new events arrive: gets every event once, in order', async () => {
    const before = await publish(6000, 'slow-before', 2000)
    const reader = await openReader('from=earliest', (r) => {
      // a reader that takes 20 ms per frame: the kernel buffer and then the hub's fill up behind it
      r.socket.pause()
      setTimeout(() => r.socket.resume(), 20)
    })
    const during = await publish(2000, 'slow-during', 2000)
    const markers = await publish(DEVICES, 'slow-marker')
    await until(reader, markers, 120_000)
    const everything = reader.events.map((e) => e.systemProperties['message-id']!)
    // from earliest: the first test's events come first, then these
    expect(everything.filter((id) => id.startsWith('slow-'))).toHaveLength(before.length + during.length + markers.length)
    expectExactlyOnceInOrder(reader.events, everything.filter((id) => id.startsWith('paused')).concat(before, during, markers))
    reader.ws.close()
  }, 180_000)
})
