// Queued C2D messages, twins and C2D feedback survive a SIGKILL of the real hub process and a
// graceful restart: what the hub acknowledged (REST 200, twin 204) is there afterwards.
import https from 'node:https'
import { rmSync } from 'node:fs'
import type mqttPacket from 'mqtt-packet'
import { afterAll, describe, expect, it } from 'vitest'
import { createSasToken } from '../src/auth/sas-token.js'
import { MqttTestClient } from './helpers/mqtt-test-client.js'
import { spawnHub, type HubProcess } from './helpers/hub-process.js'
import { tempDir } from './helpers/test-hub.js'
import { publishesSoFar, until } from './helpers/device-mqtt.js'

const dirs: string[] = []
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }) })

function request(hub: HubProcess, method: string, path: string, body: string, headers: Record<string, string>): Promise<{ status: number; headers: Record<string, unknown>; body: any }> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port: hub.ports.https, servername: 'localhost', method, path, ca: hub.ca,
      headers: { Authorization: createSasToken('localhost', hub.ownerKey, 'iothubowner'), ...headers } }, (res) => {
      let text = ''
      res.on('data', (d: Buffer) => { text += d.toString() })
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text ? JSON.parse(text) : undefined }))
    })
    req.on('error', reject)
    req.end(body)
  })
}

async function device(hub: HubProcess, deviceId: string): Promise<MqttTestClient> {
  const d = await hub.rest('GET', `/devices/${deviceId}`)
  const token = createSasToken(encodeURIComponent(`localhost/devices/${deviceId}`), d.body.authentication.symmetricKey.primaryKey)
  const { client, connack } = await MqttTestClient.connect({ port: hub.ports.mqttTcp, clientId: deviceId, password: token, clean: false })
  expect(connack.returnCode).toBe(0)
  return client
}

const DEVICES = ['dur-0', 'dur-1', 'dur-2', 'dur-3']

async function expectState(hub: HubProcess, pendingPerDevice: number): Promise<void> {
  for (const id of DEVICES) {
    const twin = (await hub.rest('GET', `/twins/${id}`)).body
    expect(twin.tags).toEqual({ owner: id })
    expect(twin.properties.desired).toMatchObject({ setpoint: 20, $version: 2 })
    expect(twin.properties.reported).toMatchObject({ fw: '2.0', $version: 2 })
    expect(twin.version).toBe(3)
    expect((await hub.rest('GET', `/devices/${id}`)).body.cloudToDeviceMessageCount).toBe(pendingPerDevice)
  }
}

describe('C2D, twins and feedback in the hub process', () => {
  it('survive a SIGKILL and a graceful restart', async () => {
    const dataDir = tempDir()
    dirs.push(dataDir)
    const hub = await spawnHub(dataDir, ['--shards', '2'])
    for (const id of DEVICES) {
      expect((await hub.rest('PUT', `/devices/${id}`, { deviceId: id })).status).toBe(200)
      for (let i = 0; i < 3; i++) {
        const r = await request(hub, 'POST', `/devices/${id}/messages/deviceBound`, `${id} #${i}`, { 'iothub-messageid': `${id}-${i}`, 'iothub-ack': 'full' })
        expect(r.status).toBe(200)
      }
      expect((await hub.rest('PATCH', `/twins/${id}`, { tags: { owner: id }, properties: { desired: { setpoint: 20 } } })).status).toBe(200)
      const c = await device(hub, id)
      await c.subscribe('$iothub/twin/res/#', 0)
      await c.subscribe(`devices/${id}/messages/devicebound/#`, 1)
      const res = c.next('publish', (p: mqttPacket.IPublishPacket) => p.topic.startsWith('$iothub/twin/res/204/'))
      c.send({ cmd: 'publish', topic: '$iothub/twin/PATCH/properties/reported/?$rid=1', payload: Buffer.from('{"fw":"2.0"}'), qos: 0, retain: false, dup: false } as mqttPacket.IPublishPacket)
      await res
      // the device takes its messages but acknowledges only the first one: two stay queued
      const got = await until(() => publishesSoFar(c, `devices/${id}/`), (l) => l.length >= 3)
      expect(got).toHaveLength(3)
      c.send({ cmd: 'puback', messageId: got[0]!.messageId } as mqttPacket.IPubackPacket)
      await until(async () => (await hub.rest('GET', `/devices/${id}`)).body.cloudToDeviceMessageCount, (n) => n === 2)
      c.destroy()
    }
    // the positive feedback reached the feedback queue (read and abandoned, so it stays)
    // a receive locks what it hands out, and each record is announced once its completion committed:
    // gather them over several receives
    const records: { statusCode: string }[] = []
    const locks: string[] = []
    await until(async () => {
      const r = await request(hub, 'GET', '/messages/serviceBound/feedback', '', {})
      if (r.status === 200) { records.push(...r.body); locks.push(String(r.headers['iothub-locktoken'])) }
      return records.length
    }, (n) => n >= DEVICES.length)
    expect(records.map((f) => f.statusCode)).toEqual(DEVICES.map(() => 'Success'))
    for (const lock of locks) expect((await request(hub, 'POST', `/messages/serviceBound/feedback/${lock}/abandon`, '', {})).status).toBe(204)
    // no pause before the kill: everything acknowledged above was committed before its answer
    hub.child.kill('SIGKILL')
    await hub.exited

    const again = await spawnHub(dataDir, ['--shards', '2'])
    try {
      await expectState(again, 2)
      const fb2 = await request(again, 'GET', '/messages/serviceBound/feedback', '', {})
      expect(fb2.status).toBe(200)
      expect(fb2.body.map((f: { originalMessageId: string }) => f.originalMessageId).sort()).toEqual(DEVICES.map((id) => `${id}-0`).sort())
      // a graceful restart keeps it all as well
      again.child.kill('SIGTERM')
      expect(await again.exited).toBe(0)
    } finally {
      if (again.child.exitCode === null) again.child.kill('SIGKILL')
    }
    const third = await spawnHub(dataDir, ['--shards', '2'])
    try {
      await expectState(third, 2)
      // the persistent session still holds the C2D subscription: the two messages come, in order, without SUBSCRIBE
      for (const id of DEVICES) {
        const c = await device(third, id)
        const got = await until(() => publishesSoFar(c, `devices/${id}/`), (l) => l.length >= 2)
        expect(got.map((p) => p.payload.toString())).toEqual([`${id} #1`, `${id} #2`])
        for (const p of got) c.send({ cmd: 'puback', messageId: p.messageId } as mqttPacket.IPubackPacket)
        await until(async () => (await third.rest('GET', `/devices/${id}`)).body.cloudToDeviceMessageCount, (n) => n === 0)
        await c.disconnect()
      }
    } finally {
      third.child.kill('SIGTERM')
      await third.exited
    }
  }, 60_000)
})
