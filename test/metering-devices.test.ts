// Issue 14 item 3 on the device side: what reaches or leaves a device is billed as Azure bills it,
// in 4 KB chunks: a device's twin GET by the twin it gets, its reported patch by the patch, a desired
// patch by what is delivered (beside the service's PATCH by its body), C2D once when delivered (not
// when sent, not when delivered again after an abandon).
import type mqttPacket from 'mqtt-packet'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connectDevice, nextPublish, twinRequest, until } from './helpers/device-mqtt.js'
import { startTestHub, type TestHub } from './helpers/test-hub.js'

let t: TestHub
beforeAll(async () => { t = await startTestHub() })
afterAll(() => t.stop())

const ops = async () => (await t.rest('GET', '/hyperhub/metering')).body.quota.operations as Record<string, { messages: number; operations: number }>
const chunks = (bytes: number) => Math.max(1, Math.ceil(bytes / 4096))

describe('metering what devices get and send', () => {
  it('bills twin reads, reported and desired patches, and C2D deliveries', async () => {
    const client = await connectDevice(t, 'meter-dev')
    await client.subscribe('$iothub/twin/res/#', 0)
    await client.subscribe('$iothub/twin/PATCH/properties/desired/#', 0)
    await client.subscribe('devices/meter-dev/messages/devicebound/#', 1)
    const before = await ops()

    const reported = JSON.stringify({ a: 'r'.repeat(3000), b: 'r'.repeat(3000) })
    expect((await twinRequest(client, '$iothub/twin/PATCH/properties/reported/?$rid=1', reported, '1')).status).toBe(204)
    const got = await twinRequest(client, '$iothub/twin/GET/?$rid=2', '', '2')
    const twinBytes = Buffer.byteLength(JSON.stringify(got.body))

    const desiredPush = nextPublish(client, '$iothub/twin/PATCH/properties/desired/')
    const servicePatch = JSON.stringify({ properties: { desired: { a: 'd'.repeat(3500), b: 'd'.repeat(3500), c: 'd'.repeat(3500) } } })
    expect((await t.rest('PATCH', '/twins/meter-dev', { raw: servicePatch, headers: { 'Content-Type': 'application/json' } })).status).toBe(200)
    const pushed = (await desiredPush).payload.length

    const c2d = nextPublish(client, 'devices/meter-dev/messages/devicebound/')
    expect((await t.rest('POST', '/devices/meter-dev/messages/deviceBound', { raw: 'c'.repeat(4097) })).status).toBe(200)
    const delivered = await c2d
    client.send({ cmd: 'puback', messageId: (delivered as mqttPacket.IPublishPacket).messageId } as mqttPacket.IPubackPacket)

    const after = await until(ops, (o) => o.c2d!.operations > before.c2d!.operations)
    const d = (op: string) => ({ messages: after[op]!.messages - before[op]!.messages, operations: after[op]!.operations - before[op]!.operations })
    expect(d('twinReads')).toEqual({ messages: chunks(twinBytes), operations: 1 })
    // the device's reported patch, the service's PATCH (its body), and the desired patch delivered
    expect(d('twinUpdates')).toEqual({ messages: chunks(reported.length) + chunks(servicePatch.length) + chunks(pushed), operations: 3 })
    expect(d('c2d')).toEqual({ messages: 2, operations: 1 })
    expect(d('d2c')).toEqual({ messages: 0, operations: 0 })
    await client.disconnect()
  })

  it('bills a direct method as its request\'s chunks plus its answer\'s, each at least one', async () => {
    const client = await connectDevice(t, 'meter-method')
    await client.subscribe('$iothub/methods/POST/#', 0)
    const before = (await ops()).methods!
    const request = nextPublish(client, '$iothub/methods/POST/')
    const body = JSON.stringify({ methodName: 'small', payload: { n: 1 }, responseTimeoutInSeconds: 10 })
    const call = t.rest('POST', '/twins/meter-method/methods', { raw: body, headers: { 'Content-Type': 'application/json' } })
    const rid = /\?\$rid=(.+)$/.exec((await request).topic)![1]!
    const answer = JSON.stringify({ big: 'a'.repeat(5000) })
    client.send({ cmd: 'publish', topic: `$iothub/methods/res/200/?$rid=${rid}`, payload: Buffer.from(answer), qos: 0, retain: false, dup: false } as mqttPacket.IPublishPacket)
    const r = await call
    expect(r.status).toBe(200)
    const after = (await ops()).methods!
    // a small request (1 chunk) and an answer of ~5 KB (2 chunks)
    expect({ messages: after.messages - before.messages, operations: after.operations - before.operations }).toEqual({ messages: 1 + chunks(Buffer.byteLength(r.text)), operations: 1 })
    expect(chunks(Buffer.byteLength(r.text))).toBe(2)
    await client.disconnect()
  })
})
