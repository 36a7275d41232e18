// Direct methods over raw MQTT: the service call, the device's answer matched by $rid, many calls in
// flight, and the failures (not online, no answer, too large, bad input).
import type mqttPacket from 'mqtt-packet'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestHub, type TestHub } from './helpers/test-hub.js'
import { connectDevice, nextPublish, sleep } from './helpers/device-mqtt.js'
import type { MqttTestClient } from './helpers/mqtt-test-client.js'

let t: TestHub
beforeAll(async () => { t = await startTestHub({ shards: 2 }) })
afterAll(async () => { await t.stop() })

const invoke = (id: string, body: unknown) => t.rest('POST', `/twins/${id}/methods?api-version=2021-04-12`, { body })

/** Answers every method call with handler(name, payload) → [status, payload]. */
function serve(c: MqttTestClient, handler: (name: string, payload: unknown) => [number, unknown] | undefined): void {
  c.socket.on('data', () => {
    for (const p of c.packets.splice(0)) {
      if (p.cmd !== 'publish') continue
      const m = /^\$iothub\/methods\/POST\/([^/]+)\/\?\$rid=(.+)$/.exec((p as mqttPacket.IPublishPacket).topic)
      if (!m) continue
      const body = (p as mqttPacket.IPublishPacket).payload.toString()
      const answer = handler(m[1]!, body ? JSON.parse(body) : null)
      if (!answer) continue
      c.send({ cmd: 'publish', topic: `$iothub/methods/res/${answer[0]}/?$rid=${m[2]}`, payload: Buffer.from(JSON.stringify(answer[1])), qos: 0, retain: false, dup: false } as mqttPacket.IPublishPacket)
    }
  })
}

describe('direct methods', () => {
  it('round-trips a call: the device gets name and payload, the service gets status and payload', async () => {
    const c = await connectDevice(t, 'dm-1')
    await c.subscribe('$iothub/methods/POST/#', 0)
    const request = nextPublish(c, '$iothub/methods/POST/')
    const call = invoke('dm-1', { methodName: 'reboot', payload: { delay: 5 }, responseTimeoutInSeconds: 10 })
    const p = await request
    expect(p.qos).toBe(0)
    const rid = /\?\$rid=(.+)$/.exec(p.topic)![1]!
    expect(p.topic).toBe(`$iothub/methods/POST/reboot/?$rid=${rid}`)
    expect(JSON.parse(p.payload.toString())).toEqual({ delay: 5 })
    c.send({ cmd: 'publish', topic: `$iothub/methods/res/201/?$rid=${rid}`, payload: Buffer.from('{"ok":true}'), qos: 0, retain: false, dup: false } as mqttPacket.IPublishPacket)
    const r = await call
    expect(r.status).toBe(200)
    expect(r.body).toEqual({ status: 201, payload: { ok: true } })
    await c.disconnect()
  })

  it('matches many calls in flight by $rid, answered out of order', async () => {
    const c = await connectDevice(t, 'dm-many')
    await c.subscribe('$iothub/methods/POST/#', 0)
    const held: [string, unknown][] = []
    c.socket.on('data', () => {
      for (const p of c.packets.splice(0)) {
        if (p.cmd !== 'publish') continue
        const m = /\?\$rid=(.+)$/.exec((p as mqttPacket.IPublishPacket).topic)!
        held.push([m[1]!, JSON.parse((p as mqttPacket.IPublishPacket).payload.toString())])
        if (held.length === 20) {
          for (const [rid, payload] of held.reverse()) {
            c.send({ cmd: 'publish', topic: `$iothub/methods/res/200/?$rid=${rid}`, payload: Buffer.from(JSON.stringify({ echo: payload })), qos: 0, retain: false, dup: false } as mqttPacket.IPublishPacket)
          }
        }
      }
    })
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => invoke('dm-many', { methodName: 'echo', payload: i })))
    results.forEach((r, i) => expect(r.body).toEqual({ status: 200, payload: { echo: i } }))
    await c.disconnect()
  })

  it('answers 404103 DeviceNotOnline for an offline or unsubscribed device, 404001 for an unknown one', async () => {
    await t.createDevice('dm-offline')
    const off = await invoke('dm-offline', { methodName: 'm' })
    expect(off.status).toBe(404)
    expect(off.body.Message).toMatch(/^ErrorCode:DeviceNotOnline;/)
    const c = await connectDevice(t, 'dm-unsub')
    const unsub = await invoke('dm-unsub', { methodName: 'm' })
    expect(unsub.body.Message).toMatch(/^ErrorCode:DeviceNotOnline;/)
    await c.disconnect()
    const unknown = await invoke('dm-nobody', { methodName: 'm' })
    expect(unknown.status).toBe(404)
    expect(unknown.body.Message).toMatch(/^ErrorCode:DeviceNotFound;/)
  })

  it('waits connectTimeoutInSeconds for the device to come online', async () => {
    await t.createDevice('dm-late')
    const call = invoke('dm-late', { methodName: 'hello', connectTimeoutInSeconds: 5 })
    await sleep(300)
    const c = await connectDevice(t, 'dm-late')
    serve(c, (name) => [200, { name }])
    await c.subscribe('$iothub/methods/POST/#', 0)
    expect((await call).body).toEqual({ status: 200, payload: { name: 'hello' } })
    await c.disconnect()
  })

  it('answers 504101 GatewayTimeout when the device does not answer in time', async () => {
    const c = await connectDevice(t, 'dm-silent')
    await c.subscribe('$iothub/methods/POST/#', 0)
    const started = Date.now()
    const r = await invoke('dm-silent', { methodName: 'ignored', responseTimeoutInSeconds: 5 })
    expect(r.status).toBe(504)
    expect(r.headers['iothub-errorcode']).toBe('GatewayTimeout')
    expect(Date.now() - started).toBeGreaterThanOrEqual(4900)
    // a late answer is dropped quietly: the connection and the next call work
    c.send({ cmd: 'publish', topic: '$iothub/methods/res/200/?$rid=1', payload: Buffer.from('{}'), qos: 0, retain: false, dup: false } as mqttPacket.IPublishPacket)
    serve(c, () => [200, 'after'])
    expect((await invoke('dm-silent', { methodName: 'marker', responseTimeoutInSeconds: 5 })).body).toEqual({ status: 200, payload: 'after' })
    await c.disconnect()
  }, 15_000)

  it('refuses bad calls: payload over 128 KB, bad timeouts, bad names, malformed JSON', async () => {
    const c = await connectDevice(t, 'dm-bad')
    await c.subscribe('$iothub/methods/POST/#', 0)
    const big = await invoke('dm-bad', { methodName: 'm', payload: 'x'.repeat(128 * 1024) })
    expect(big.status).toBe(413)
    expect(big.body.Message).toMatch(/^ErrorCode:MessageTooLarge;/)
    for (const body of [{ methodName: 'm', responseTimeoutInSeconds: 4 }, { methodName: 'm', responseTimeoutInSeconds: 301 }, { methodName: 'm', connectTimeoutInSeconds: -1 },
      { methodName: 'a/b' }, { payload: 1 }, { methodName: '' }]) {
      const r = await invoke('dm-bad', body)
      expect(r.status, JSON.stringify(body)).toBe(400)
      expect(r.body.Message).toMatch(/^ErrorCode:ArgumentInvalid;/)
    }
    const malformed = await t.rest('POST', '/twins/dm-bad/methods', { raw: '{"methodName":' })
    expect(malformed.body.Message).toMatch(/^ErrorCode:DeserializationError;/)
    // a device answer over 128 KB fails the call, and the device stays connected
    serve(c, () => [200, 'y'.repeat(130 * 1024)])
    const tooBig = await invoke('dm-bad', { methodName: 'm' })
    expect(tooBig.status).toBe(413)
    serve(c, () => [200, 'fine'])
    await c.disconnect()
  })
})
