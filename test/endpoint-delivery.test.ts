// Endpoint deliveries of the real hub process (`spawnHub`): every acknowledged message reaches a
// storage endpoint (exactly once), a webhook (at least once, in order per device, without gaps) and a
// log endpoint through a SIGKILL under QoS 1 load; and what waits for a webhook that never answers
// waits on disk, not in the hub's memory.
import { routedBlobs, routedLines } from './helpers/routed-blobs.js'
import { rssAnonBytes } from './helpers/memory.js'
import http from 'node:http'
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { createSasToken } from '../src/auth/sas-token.js'
import { MqttTestClient } from './helpers/mqtt-test-client.js'
import { spawnHub, type HubProcess } from './helpers/hub-process.js'
import { tempDir } from './helpers/test-hub.js'
import { until } from './helpers/device-mqtt.js'
import { outboxEventCounts, outboxNames } from './helpers/outbox-inspect.js'

const PARTITIONS = 4
const dirs: string[] = []
const servers: http.Server[] = []
afterAll(() => {
  for (const s of servers) { s.closeAllConnections(); s.close() }
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

type Receipt = { deviceId: string; messageId: string }
const recordIds = (r: { SystemProperties: { connectionDeviceId: string; messageId: string } }): Receipt =>
  ({ deviceId: r.SystemProperties.connectionDeviceId, messageId: r.SystemProperties.messageId })

async function listen(handler: http.RequestListener): Promise<string> {
  const server = http.createServer(handler)
  servers.push(server)
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return `http://127.0.0.1:${(server.address() as { port: number }).port}/hook`
}

async function configure(hub: HubProcess, path: string, body: unknown): Promise<void> {
  const r = await hub.rest('PUT', path, body)
  expect(r.status, JSON.stringify(r.body)).toBe(200)
}

async function connect(hub: HubProcess, deviceId: string): Promise<MqttTestClient> {
  const r = await hub.rest('PUT', `/devices/${deviceId}`, { deviceId })
  const token = createSasToken(encodeURIComponent(`localhost/devices/${deviceId}`), r.body.authentication.symmetricKey.primaryKey)
  const { client, connack } = await MqttTestClient.connect({ port: hub.ports.mqttTcp, clientId: deviceId, password: token })
  expect(connack.returnCode).toBe(0)
  return client
}

function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return []
  return readdirSync(dir).flatMap((f) => {
    const path = join(dir, f)
    return statSync(path).isDirectory() ? filesUnder(path) : [path]
  })
}

/** Storage records in blob-name order (names carry partition and time), lines in blob order, read from the hub's blob store. */
async function storageReceipts(dataDir: string): Promise<Receipt[]> {
  return (await routedLines(dataDir, 'archive')).map((l) => recordIds(JSON.parse(l)))
}

async function logReceipts(hub: HubProcess, name: string): Promise<Receipt[]> {
  const out: Receipt[] = []
  for (let p = 0; p < PARTITIONS; p++) {
    for (let from = 0, page = 0; page < 1000; page++) {
      const r = await hub.rest('GET', `/messages/endpoints/${name}/partitions/${p}/events?fromSequenceNumber=${from}&maxCount=1000`)
      expect(r.status).toBe(200)
      for (const e of r.body.events) out.push({ deviceId: e.systemProperties['iothub-connection-device-id'], messageId: e.systemProperties['message-id'] })
      // a page stops at 1,000 events or 4 MB: the partition ends at the first empty page
      if (r.body.events.length === 0) break
      from = r.body.nextSequenceNumber
    }
  }
  return out
}

/** Message indexes per device, in the order received. */
function byDevice(receipts: Receipt[]): Map<string, number[]> {
  const out = new Map<string, number[]>()
  for (const r of receipts) {
    let l = out.get(r.deviceId)
    if (!l) out.set(r.deviceId, (l = []))
    l.push(Number(r.messageId.slice(r.messageId.lastIndexOf('-') + 1)))
  }
  return out
}

const covers = (acked: Map<string, number>, receipts: Receipt[]) => {
  const got = byDevice(receipts)
  return [...acked].every(([d, n]) => new Set(got.get(d) ?? []).size >= n)
}

/**
 * Every acknowledged message is there; per device the first occurrences run 0, 1, 2, … (in order,
 * no gaps: commits are in order, so what is there beyond the acknowledged is a prefix too).
 */
function expectComplete(what: string, acked: Map<string, number>, receipts: Receipt[], exactlyOnce: boolean): void {
  const got = byDevice(receipts)
  for (const [deviceId, count] of acked) {
    const all = got.get(deviceId) ?? []
    const firsts = [...new Set(all)]
    expect(firsts, `${what}: ${deviceId}`).toEqual(Array.from({ length: firsts.length }, (_, i) => i))
    expect(firsts.length, `${what}: ${deviceId} acknowledged`).toBeGreaterThanOrEqual(count)
    if (exactlyOnce) expect(all.length, `${what}: ${deviceId} duplicates`).toBe(firsts.length)
  }
}

describe('endpoint deliveries of the hub process', () => {
  it('gets every acknowledged message to storage, webhook and log endpoints through a SIGKILL', async () => {
    const hooked: Receipt[] = []
    const url = await listen((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        hooked.push(...(JSON.parse(Buffer.concat(chunks).toString('utf8')) as Parameters<typeof recordIds>[0][]).map(recordIds))
        res.writeHead(200).end()
      })
    })
    const dataDir = tempDir()
    dirs.push(dataDir)
    const args = ['--shards', '2', '--partitions', String(PARTITIONS)]
    const hub = await spawnHub(dataDir, args)
    await configure(hub, '/routing/endpoints/logs/copy', {})
    await configure(hub, '/routing/endpoints/storageContainers/archive', { batchFrequencyInSeconds: 1, encoding: 'JSON' })
    await configure(hub, '/routing/endpoints/webhooks/hook', { url, maxDeliveryAttempts: 20 })
    for (const ep of ['copy', 'archive', 'hook']) await configure(hub, `/routing/routes/to-${ep}`, { condition: 'true', endpointNames: [ep] })

    // devices publish QoS 1 with a window of messages in flight until the hub dies
    const DEVICES = 8
    const WINDOW = 8
    const acked = new Map<string, number>()
    const clients: MqttTestClient[] = []
    let running = true
    for (let d = 0; d < DEVICES; d++) {
      const deviceId = `kill-${d}`
      const client = await connect(hub, deviceId)
      clients.push(client)
      acked.set(deviceId, 0)
      const done: boolean[] = []
      let n = 0
      const pump = () => {
        if (!running || n >= 50_000) return
        const i = n++
        client.publish(`devices/${deviceId}/messages/events/%24.mid=${deviceId}-${i}`, Buffer.alloc(200, 1), 1).then(() => {
          // counted only as a contiguous run: the acknowledged prefix
          done[i] = true
          let c = acked.get(deviceId)!
          while (done[c]) c++
          acked.set(deviceId, c)
          pump()
        }, () => {})
      }
      for (let w = 0; w < WINDOW; w++) pump()
    }
    await until(() => [...acked.values()].reduce((a, b) => a + b, 0), (n) => n >= 2000, 15_000)
    hub.child.kill('SIGKILL')
    await hub.exited
    running = false
    for (const c of clients) c.destroy()
    const total = [...acked.values()].reduce((a, b) => a + b, 0)
    expect(total).toBeGreaterThanOrEqual(2000)

    const again = await spawnHub(dataDir, args)
    try {
      await until(() => covers(acked, hooked), (ok) => ok, 30_000)
      await until(async () => covers(acked, await storageReceipts(dataDir)), (ok) => ok, 30_000)
      expectComplete('webhook', acked, hooked, false)
      expectComplete('storage', acked, await storageReceipts(dataDir), true)
      expectComplete('log endpoint', acked, await logReceipts(again, 'copy'), true)
      for (const b of await routedBlobs(dataDir, 'archive')) expect(b.name).toMatch(/^localhost\/\d\/\d{4}\/\d\d\/\d\d\/\d\d\/\d\d$/)
    } finally {
      again.child.kill('SIGTERM')
      await again.exited
    }
  }, 90_000)

  it('keeps what waits for a webhook that never answers on disk, not in the hub\'s memory', async () => {
    const requests: { bytes: number; ended: boolean }[] = []
    // accepts and reads every request, never answers
    const url = await listen((req) => {
      const r = { bytes: 0, ended: false }
      requests.push(r)
      req.on('data', (c: Buffer) => { r.bytes += c.length })
      req.on('end', () => { r.ended = true })
    })
    const dataDir = tempDir()
    dirs.push(dataDir)
    const hub = await spawnHub(dataDir, ['--shards', '1', '--partitions', String(PARTITIONS)])
    try {
      await configure(hub, '/routing/endpoints/webhooks/hang', { url, timeoutInSeconds: 60, maxDeliveryAttempts: 20 })
      await configure(hub, '/routing/routes/to-hang', { condition: 'true', endpointNames: ['hang'] })
      const client = await connect(hub, 'hang-dev')
      const body = Buffer.alloc(200 * 1024, 7)
      const publishAll = async (from: number, count: number) => {
        for (let i = from; i < from + count; i += 8) {
          await Promise.all(Array.from({ length: Math.min(8, from + count - i) }, (_, j) => client.publish(`devices/hang-dev/messages/events/%24.mid=h-${i + j}`, body, 1)))
        }
      }
      // warm up (and the first request goes out and hangs), then measure across the load
      await publishAll(0, 40)
      await until(() => requests.length, (n) => n >= 1, 10_000)
      const before = rssAnonBytes(hub.child.pid!)
      const N = 1000
      // every one is acknowledged: PUBACK waits for the outbox, not for the receiver
      await publishAll(40, N)
      // a changed endpoint keeps its backlog: its deliverer starts again from the cursor, with ~270 MB waiting
      await configure(hub, '/routing/endpoints/webhooks/hang', { url, timeoutInSeconds: 59, maxDeliveryAttempts: 20 })
      await until(() => requests[1]?.ended, (e) => e === true, 10_000)
      const after = rssAnonBytes(hub.child.pid!)
      const counts = await outboxEventCounts(dataDir, outboxNames('webhook', 'hang', PARTITIONS))
      expect(Object.values(counts).reduce((a: number, n) => a + (n ?? 0), 0)).toBe(40 + N)
      // one request in flight at a time (one device: one partition), each a bounded batch
      expect(requests).toHaveLength(2)
      expect(requests[1]!.bytes).toBeLessThanOrEqual(1024 * 1024)
      console.log(`hung webhook: ${N} × 200 KB acknowledged; hub RssAnon ${(before / 2 ** 20).toFixed(0)} → ${(after / 2 ** 20).toFixed(0)} MB`)
      // the messages are ~270 MB as records: held in memory they would be far more than this
      expect(after - before).toBeLessThan(100 * 2 ** 20)

      // removing it drops the ~200 MB outbox: one LMDB operation, nothing read back into memory
      const removing = Date.now()
      expect((await hub.rest('DELETE', '/routing/routes/to-hang')).status).toBe(204)
      expect((await hub.rest('DELETE', '/routing/endpoints/webhooks/hang')).status).toBe(204)
      const removedMs = Date.now() - removing
      expect(Object.values(await outboxEventCounts(dataDir, outboxNames('webhook', 'hang', PARTITIONS)))).toEqual([null, null, null, null])
      const afterRemoval = rssAnonBytes(hub.child.pid!)
      console.log(`removed with its backlog in ${removedMs} ms; hub RssAnon ${(afterRemoval / 2 ** 20).toFixed(0)} MB`)
      expect(afterRemoval - before).toBeLessThan(100 * 2 ** 20)
      client.destroy()
    } finally {
      hub.child.kill('SIGTERM')
      await hub.exited
    }
  }, 90_000)
})

