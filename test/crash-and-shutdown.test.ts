// Durability of the real hub process: under QoS 1 load from many devices, every message whose PUBACK
// (or, over AMQP, whose accepted settlement) a client received survives a SIGKILL, and a SIGTERM
// drains without losing one.
import { rmSync } from 'node:fs'
import { afterAll, describe, expect, it } from 'vitest'
import { createSasToken } from '../src/auth/sas-token.js'
import { MqttTestClient } from './helpers/mqtt-test-client.js'
import { allEvents, spawnHub, type HubProcess } from './helpers/hub-process.js'
import { tempDir } from './helpers/test-hub.js'
import { amqpConnect, putToken } from './helpers/amqp-client.js'

const DEVICES = 20
const WINDOW = 10
const dirs: string[] = []
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }) })

/** Many devices publish QoS 1 with a window of in-flight messages until stopped; returns what was acked. */
async function loadHub(hub: HubProcess, prefix: string): Promise<{ stop: () => void; acked: Map<string, string[]>; clients: MqttTestClient[] }> {
  const acked = new Map<string, string[]>()
  const clients: MqttTestClient[] = []
  let running = true
  for (let d = 0; d < DEVICES; d++) {
    const deviceId = `${prefix}-${d}`
    const r = await hub.rest('PUT', `/devices/${deviceId}`, { deviceId })
    const token = createSasToken(encodeURIComponent(`localhost/devices/${deviceId}`), r.body.authentication.symmetricKey.primaryKey)
    const { client } = await MqttTestClient.connect({ port: hub.ports.mqttTcp, clientId: deviceId, password: token })
    clients.push(client)
    acked.set(deviceId, [])
    let n = 0
    const pump = () => {
      // bounded: at most 100k messages per device, and the test stops it after a few seconds
      if (!running || n >= 100_000) return
      const mid = `${deviceId}-${n++}`
      client.publish(`devices/${deviceId}/messages/events/%24.mid=${mid}`, Buffer.alloc(256, 1), 1)
        .then(() => { acked.get(deviceId)!.push(mid); pump() }, () => {})
    }
    for (let w = 0; w < WINDOW; w++) pump()
  }
  return { stop: () => { running = false }, acked, clients }
}

const AMQP_DEVICES = 5

/** Devices sending over AMQP with WINDOW unsettled messages each; `acked` gets what the hub accepted. */
async function loadHubOverAmqp(hub: HubProcess, prefix: string, acked: Map<string, string[]>): Promise<{ stop: () => void; close: () => void }> {
  let running = true
  const conns: { close(): void }[] = []
  for (let d = 0; d < AMQP_DEVICES; d++) {
    const deviceId = `${prefix}-amqp-${d}`
    const r = await hub.rest('PUT', `/devices/${deviceId}`, { deviceId })
    const audience = encodeURIComponent(`localhost/devices/${deviceId}`)
    const conn = await amqpConnect(hub.ports.amqp!, hub.ca)
    conns.push(conn)
    expect(await putToken(conn, createSasToken(audience, r.body.authentication.symmetricKey.primaryKey), audience)).toBe(200)
    const sender = conn.open_sender({ target: { address: `/devices/${deviceId}/messages/events` } })
    await new Promise((resolve) => sender.once('sendable', resolve))
    acked.set(deviceId, [])
    let n = 0
    const sent = new Map<unknown, string>()
    const pump = () => {
      if (!running || n >= 100_000) return
      const mid = `${deviceId}-${n++}`
      sent.set(sender.send({ message_id: mid, body: Buffer.alloc(256, 1) }), mid)
    }
    sender.on('accepted', (ctx) => {
      const mid = sent.get(ctx.delivery)
      if (mid === undefined) return
      sent.delete(ctx.delivery)
      acked.get(deviceId)!.push(mid)
      pump()
    })
    for (let w = 0; w < WINDOW; w++) pump()
  }
  return {
    stop: () => { running = false },
    close: () => { for (const c of conns) try { (c as unknown as { socket?: { destroy(): void } }).socket?.destroy() } catch { /* gone */ } },
  }
}

function expectAllAckedStored(acked: Map<string, string[]>, events: { systemProperties: Record<string, string> }[]): number {
  const stored = new Set(events.map((e) => `${e.systemProperties['iothub-connection-device-id']}|${e.systemProperties['message-id']}`))
  let count = 0
  const missing: string[] = []
  for (const [deviceId, mids] of acked) {
    for (const mid of mids) {
      count++
      if (!stored.has(`${deviceId}|${mid}`)) missing.push(mid)
    }
  }
  expect(missing).toEqual([])
  return count
}

describe('the hub process', () => {
  it('keeps every acknowledged message through a SIGKILL, then serves again', async () => {
    const dataDir = tempDir()
    dirs.push(dataDir)
    const hub = await spawnHub(dataDir, ['--shards', '2'])
    const load = await loadHub(hub, 'crash')
    const overAmqp = await loadHubOverAmqp(hub, 'crash', load.acked)
    await new Promise((r) => setTimeout(r, 1500))
    hub.child.kill('SIGKILL')
    await hub.exited
    load.stop()
    overAmqp.stop()
    for (const c of load.clients) c.destroy()
    overAmqp.close()
    const ackedCount = [...load.acked.values()].reduce((s, l) => s + l.length, 0)
    expect(ackedCount).toBeGreaterThan(DEVICES * WINDOW)
    const ackedOverAmqp = [...load.acked].filter(([id]) => id.includes('-amqp-')).reduce((s, [, l]) => s + l.length, 0)
    expect(ackedOverAmqp).toBeGreaterThan(AMQP_DEVICES * WINDOW)

    const again = await spawnHub(dataDir, ['--shards', '2'])
    try {
      expectAllAckedStored(load.acked, await allEvents(again))
      // and it serves: a device connects, publishes, and the message is readable
      const device = await again.rest('GET', '/devices/crash-0')
      const token = createSasToken(encodeURIComponent('localhost/devices/crash-0'), device.body.authentication.symmetricKey.primaryKey)
      const { client, connack } = await MqttTestClient.connect({ port: again.ports.mqttTcp, clientId: 'crash-0', password: token })
      expect(connack.returnCode).toBe(0)
      await client.publish('devices/crash-0/messages/events/%24.mid=after-restart', 'hello', 1)
      const events = await allEvents(again)
      expect(events.some((e) => e.systemProperties['message-id'] === 'after-restart')).toBe(true)
      await client.disconnect()
    } finally {
      again.child.kill('SIGTERM')
      await again.exited
    }
  }, 60_000)

  // the default I/O threads (the core count), one, three (more than this machine's cores), and none (the main thread)
  it.each([[[] as string[]], [['--io-threads', '1']], [['--io-threads', '3']], [['--io-threads', '0']]])('drains on SIGTERM: exits 0 and every acknowledged message is stored (%j)', async (args) => {
    const dataDir = tempDir()
    dirs.push(dataDir)
    const hub = await spawnHub(dataDir, args)
    const load = await loadHub(hub, 'term')
    await new Promise((r) => setTimeout(r, 1000))
    hub.child.kill('SIGTERM')
    // the hub's log says why, should it fail to drain
    expect(await hub.exited, hub.output()).toBe(0)
    load.stop()
    await Promise.all(load.clients.map((c) => c.closed))
    const again = await spawnHub(dataDir)
    try {
      expect(expectAllAckedStored(load.acked, await allEvents(again))).toBeGreaterThan(0)
    } finally {
      again.child.kill('SIGTERM')
      await again.exited
    }
  }, 60_000)
})
