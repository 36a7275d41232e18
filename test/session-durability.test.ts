// Issue 10 item 3: SUBACK promises the subscription is stored. On the real hub process, a SIGKILL
// the moment SUBACKs arrive keeps every acknowledged subscription (the official SDK never
// subscribes again after it reconnects), and a deleted device's persistent session goes with it.
import { rmSync } from 'node:fs'
import type mqttPacket from 'mqtt-packet'
import { afterAll, describe, expect, it } from 'vitest'
import { createSasToken } from '../src/auth/sas-token.js'
import { MqttTestClient } from './helpers/mqtt-test-client.js'
import { spawnHub, type HubProcess } from './helpers/hub-process.js'
import { tempDir } from './helpers/test-hub.js'

const dirs: string[] = []
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }) })

async function connect(hub: HubProcess, deviceId: string, key: string, clean = false) {
  const token = createSasToken(encodeURIComponent(`localhost/devices/${deviceId}`), key)
  return MqttTestClient.connect({ port: hub.ports.mqttTcp, clientId: deviceId, password: token, clean })
}

const c2dFilter = (id: string) => `devices/${id}/messages/devicebound/#`

describe('persistent sessions', () => {
  it('a SIGKILL right after SUBACK keeps every acknowledged subscription (3 rounds)', async () => {
    const dataDir = tempDir()
    dirs.push(dataDir)
    for (let round = 0; round < 3; round++) {
      let hub = await spawnHub(dataDir, ['--shards', '2'])
      const keys = new Map<string, string>()
      const clients: { id: string; client: MqttTestClient }[] = []
      for (let d = 0; d < 30; d++) {
        const id = `sub-kill-${round}-${d}`
        const r = await hub.rest('PUT', `/devices/${id}`, { deviceId: id })
        keys.set(id, r.body.authentication.symmetricKey.primaryKey)
        clients.push({ id, client: (await connect(hub, id, keys.get(id)!)).client })
      }
      // every device subscribes at once; the hub dies as soon as the first SUBACK is seen
      const subacked = new Set<string>()
      let killed = false
      for (const { id, client } of clients) {
        client.subscribe(c2dFilter(id), 1).then(() => {
          subacked.add(id)
          if (!killed) { killed = true; hub.child.kill('SIGKILL') }
        }, () => {})
      }
      await hub.exited
      expect(subacked.size).toBeGreaterThan(0)
      for (const { client } of clients) client.destroy()

      hub = await spawnHub(dataDir, ['--shards', '2'])
      try {
        const lost: string[] = []
        for (const id of subacked) {
          const { client, connack } = await connect(hub, id, keys.get(id)!)
          expect(connack.sessionPresent).toBe(true)
          const delivered = client.next('publish', (p: mqttPacket.IPublishPacket) => p.topic.startsWith(`devices/${id}/messages/devicebound/`))
          expect((await hub.rest('POST', `/devices/${id}/messages/deviceBound`, { hello: id })).status).toBe(200)
          // a resumed subscription delivers at once; 5 s without it means the subscription was lost
          const p = await Promise.race([delivered, new Promise<undefined>((r) => setTimeout(() => r(undefined), 5000))]) as mqttPacket.IPublishPacket | undefined
          if (!p) lost.push(id)
          else expect(JSON.parse(p.payload.toString())).toEqual({ hello: id })
          client.destroy()
        }
        expect(lost).toEqual([])
      } finally {
        hub.child.kill('SIGKILL')
        await hub.exited
      }
    }
  }, 120_000)

  it('a deleted device takes its session along: a new device with the same id starts clean', async () => {
    const dataDir = tempDir()
    dirs.push(dataDir)
    const hub = await spawnHub(dataDir)
    try {
      const id = 'session-of-deleted'
      const first = await hub.rest('PUT', `/devices/${id}`, { deviceId: id })
      const a = await connect(hub, id, first.body.authentication.symmetricKey.primaryKey)
      expect(await a.client.subscribe(c2dFilter(id), 1)).toEqual([1])
      await a.client.disconnect()
      const resumed = await connect(hub, id, first.body.authentication.symmetricKey.primaryKey)
      expect(resumed.connack.sessionPresent).toBe(true)
      await resumed.client.disconnect()
      expect((await hub.rest('DELETE', `/devices/${id}`)).status).toBe(204)
      const second = await hub.rest('PUT', `/devices/${id}`, { deviceId: id })
      const b = await connect(hub, id, second.body.authentication.symmetricKey.primaryKey)
      expect(b.connack.returnCode).toBe(0)
      expect(b.connack.sessionPresent).toBe(false)
      await b.client.disconnect()
    } finally {
      hub.child.kill('SIGKILL')
      await hub.exited
    }
  }, 60_000)
})
