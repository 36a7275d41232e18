// Issue 10 items 6 and 12, on the real hub process: a device that asks for its 30 KB twin thousands
// of times and never reads the answers cannot grow the hub by more than its connection's bound (it
// is stopped, then closed), and the hub-wide hold on telemetry in flight (20,000 messages) releases:
// a QoS 1 marker sent after 30,000 QoS 0 messages is acknowledged.
import { readFileSync, rmSync } from 'node:fs'
import net from 'node:net'
import mqttPacket from 'mqtt-packet'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createSasToken } from '../src/auth/sas-token.js'
import { TELEMETRY_HIGH_WATER } from '../src/edge/device-edge.js'
import { MqttTestClient } from './helpers/mqtt-test-client.js'
import { spawnHub, type HubProcess } from './helpers/hub-process.js'
import { tempDir } from './helpers/test-hub.js'

let hub: HubProcess
let dataDir: string
beforeAll(async () => {
  dataDir = tempDir()
  hub = await spawnHub(dataDir, ['--shards', '2'])
}, 60_000)
afterAll(async () => {
  hub?.child.kill('SIGKILL')
  await hub?.exited
  rmSync(dataDir, { recursive: true, force: true })
})

const rssMb = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${hub.child.pid}/status`, 'utf8'))![1]) / 1024

async function device(id: string): Promise<string> {
  const r = await hub.rest('PUT', `/devices/${id}`, { deviceId: id })
  return createSasToken(encodeURIComponent(`localhost/devices/${id}`), r.body.authentication.symmetricKey.primaryKey)
}

describe('the real hub under a client that does not read', () => {
  it('a device sending 5,000 twin GETs for a 30 KB twin without reading is held to its bound, then closed', async () => {
    const token = await device('never-reads')
    const desired: Record<string, string> = {}
    for (let i = 0; i < 8; i++) desired[`k${i}`] = 'x'.repeat(3900)
    expect((await hub.rest('PATCH', '/twins/never-reads', { properties: { desired } })).status).toBe(200)
    const { client } = await MqttTestClient.connect({ port: hub.ports.mqttTcp, clientId: 'never-reads', password: token })
    await client.subscribe('$iothub/twin/res/#', 0)
    const before = rssMb()
    client.socket.pause() // from here the client reads nothing
    const get = (rid: number) => mqttPacket.generate({ cmd: 'publish', topic: `$iothub/twin/GET/?$rid=${rid}`, payload: Buffer.alloc(0), qos: 0, retain: false, dup: false } as mqttPacket.IPublishPacket)
    client.socket.write(Buffer.concat(Array.from({ length: 5000 }, (_, i) => get(i))))
    let peak = before
    const sampler = setInterval(() => { peak = Math.max(peak, rssMb()) }, 100)
    // the hub stops reading it, and closes it once it has not drained for 30 s (the paused client
    // cannot see the close itself: the registry can)
    const deadline = Date.now() + 50_000
    while ((await hub.rest('GET', '/devices/never-reads')).body.connectionState === 'Connected') {
      if (Date.now() > deadline) throw new Error('the hub never closed the connection')
      await new Promise((r) => setTimeout(r, 250))
    }
    clearInterval(sampler)
    client.destroy()
    // 5,000 answers of 30 KB would be 150 MB; the bound is a few MB of socket buffers
    expect(peak - before).toBeLessThan(60)
  }, 70_000)

  it(`releases the hub-wide hold: a QoS 1 marker after ${TELEMETRY_HIGH_WATER * 1.5} QoS 0 messages is acknowledged`, async () => {
    const token = await device('floods')
    const { client } = await MqttTestClient.connect({ port: hub.ports.mqttTcp, clientId: 'floods', password: token })
    const one = mqttPacket.generate({ cmd: 'publish', topic: 'devices/floods/messages/events/', payload: Buffer.alloc(32), qos: 0, retain: false, dup: false } as mqttPacket.IPublishPacket)
    for (let sent = 0; sent < TELEMETRY_HIGH_WATER * 1.5; sent += 1000) client.socket.write(Buffer.concat(Array.from({ length: 1000 }, () => one)))
    // if the shards never reported what they finished, every connection would stay held and this would never be acked
    await client.publish('devices/floods/messages/events/%24.mid=marker', 'marker', 1)
    await client.disconnect()
  }, 60_000)
})
