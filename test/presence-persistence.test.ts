// A device's lastActivityTime survives a restart of the hub.
import { rmSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { MqttTestClient } from './helpers/mqtt-test-client.js'
import { startTestHub, tempDir } from './helpers/test-hub.js'

describe('presence across restarts', () => {
  it('keeps lastActivityTime of a disconnected device', async () => {
    const dataDir = tempDir()
    try {
      const first = await startTestHub({}, { dataDir })
      const { primaryKey } = await first.createDevice('presence-dev')
      const { client } = await MqttTestClient.connect({ port: first.hub.ports.mqttTcp!, clientId: 'presence-dev', password: first.deviceToken('presence-dev', primaryKey) })
      await client.publish('devices/presence-dev/messages/events/', 'x', 1)
      await client.disconnect()
      let before = (await first.rest('GET', '/devices/presence-dev')).body
      for (let i = 0; i < 100 && before.connectionState !== 'Disconnected'; i++) {
        await new Promise((r) => setTimeout(r, 20))
        before = (await first.rest('GET', '/devices/presence-dev')).body
      }
      expect(before.lastActivityTime).not.toBe('0001-01-01T00:00:00')
      await first.stop()
      const second = await startTestHub({}, { dataDir })
      const after = (await second.rest('GET', '/devices/presence-dev')).body
      expect(after.lastActivityTime).toBe(before.lastActivityTime)
      // deleting the device forgets it
      await second.rest('DELETE', '/devices/presence-dev')
      await second.createDevice('presence-dev')
      expect((await second.rest('GET', '/devices/presence-dev')).body.lastActivityTime).toBe('0001-01-01T00:00:00')
      await second.stop()
    } finally {
      rmSync(dataDir, { recursive: true, force: true })
    }
  })
})
