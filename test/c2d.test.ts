// Cloud-to-device messages over raw MQTT with the REST send: queueing while offline, in-order
// delivery, PUBACK completion, redelivery, expiry, max delivery count, feedback, purge and limits.
import type mqttPacket from 'mqtt-packet'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestHub, type TestHub } from './helpers/test-hub.js'
import { connectDevice, nextPublish, publishesSoFar, sleep, until } from './helpers/device-mqtt.js'

let t: TestHub
beforeAll(async () => { t = await startTestHub({ shards: 2 }) })
afterAll(async () => { await t.stop() })

const send = (id: string, body: string | Buffer, headers: Record<string, string> = {}) =>
  t.rest('POST', `/devices/${id}/messages/deviceBound?api-version=2021-04-12`, { raw: body, headers })
const c2dCount = async (id: string) => (await t.rest('GET', `/devices/${id}`)).body.cloudToDeviceMessageCount
const bagOf = (p: mqttPacket.IPublishPacket) => new URLSearchParams(p.topic.split('/')[4])

/**
 * Sends a marker after everything else and waits for it: C2D is delivered in order, so what the
 * device got before the marker is everything it will get for what was sent before it.
 */
async function untilMarker(c: Awaited<ReturnType<typeof connectDevice>>, id: string): Promise<string[]> {
  const marker = `marker-${Math.random()}`
  expect((await send(id, marker)).status).toBe(200)
  const got = await until(() => publishesSoFar(c, `devices/${id}/`), (l) => l.some((p) => p.payload.toString() === marker))
  for (const p of got) if (p.payload.toString() === marker) c.send({ cmd: 'puback', messageId: p.messageId } as mqttPacket.IPubackPacket)
  return got.map((p) => p.payload.toString()).filter((b) => b !== marker)
}

/** Reads the feedback queue until it is empty, completing each message; returns the records. */
async function drainFeedback(): Promise<any[]> {
  const out: any[] = []
  for (;;) {
    const r = await t.rest('GET', '/messages/serviceBound/feedback?api-version=2021-04-12')
    if (r.status === 204) return out
    expect(r.status).toBe(200)
    out.push(...r.body)
    const lock = r.headers.etag!.toString().replace(/"/g, '')
    expect((await t.rest('DELETE', `/messages/serviceBound/feedback/${lock}?api-version=2021-04-12`)).status).toBe(204)
  }
}

describe('C2D messages', () => {
  it('queues while offline and delivers in order, once, with properties; PUBACK completes', async () => {
    await t.createDevice('c2d-order')
    for (let i = 0; i < 5; i++) {
      const r = await send('c2d-order', `msg ${i}`, {
        'iothub-messageid': `m-${i}`, 'iothub-correlationid': `c-${i}`, 'iothub-ack': 'positive', 'iothub-app-path': 'a/b c', 'iothub-contenttype': 'text/plain',
      })
      expect(r.status).toBe(200)
      expect(r.body).toMatchObject({ deviceId: 'c2d-order', messageId: `m-${i}`, sequenceNumber: i + 1, queueDepth: i + 1 })
    }
    expect(await c2dCount('c2d-order')).toBe(5)
    const c = await connectDevice(t, 'c2d-order')
    const granted = await c.subscribe('devices/c2d-order/messages/devicebound/#', 1)
    expect(granted).toEqual([1])
    const got = await until(() => publishesSoFar(c, 'devices/c2d-order/'), (l) => l.length >= 5)
    expect(got.map((p) => p.payload.toString())).toEqual(['msg 0', 'msg 1', 'msg 2', 'msg 3', 'msg 4'])
    expect(got.every((p) => p.qos === 1)).toBe(true)
    expect(got[0]!.topic).toContain('path=a%2Fb%20c')
    const bag = bagOf(got[0]!)
    expect(Object.fromEntries(bag)).toMatchObject({ '$.mid': 'm-0', '$.cid': 'c-0', '$.to': '/devices/c2d-order/messages/devicebound', '$.ct': 'text/plain', 'iothub-ack': 'positive', path: 'a/b c' })
    for (const p of got) c.send({ cmd: 'puback', messageId: p.messageId } as mqttPacket.IPubackPacket)
    expect(await until(() => c2dCount('c2d-order'), (n) => n === 0)).toBe(0)
    expect(await untilMarker(c, 'c2d-order')).toEqual(['msg 0', 'msg 1', 'msg 2', 'msg 3', 'msg 4'])
    await c.disconnect()
    // nothing again after a reconnect
    const again = await connectDevice(t, 'c2d-order')
    expect(await untilMarker(again, 'c2d-order')).toEqual([])
    await again.disconnect()
    const feedback = (await drainFeedback()).filter((f) => f.deviceId === 'c2d-order')
    expect(feedback.map((f) => f.originalMessageId)).toEqual(['m-0', 'm-1', 'm-2', 'm-3', 'm-4'])
    expect(feedback[0]).toMatchObject({ statusCode: 'Success', description: 'Success', deviceGenerationId: t.hub.registry.get('c2d-order')!.generationId })
  })

  it('delivers messages sent concurrently to a connected device, all of them, in sequence order', async () => {
    const c = await connectDevice(t, 'c2d-burst')
    await c.subscribe('devices/c2d-burst/messages/devicebound/#', 1)
    c.socket.on('data', () => {
      for (const p of c.packets) if (p.cmd === 'publish' && !(p as { acked?: boolean }).acked) {
        (p as { acked?: boolean }).acked = true
        c.send({ cmd: 'puback', messageId: p.messageId } as mqttPacket.IPubackPacket)
      }
    })
    const sent = await Promise.all(Array.from({ length: 40 }, (_, i) => send('c2d-burst', `b${i}`)))
    expect(sent.every((r) => r.status === 200)).toBe(true)
    const got = await until(() => publishesSoFar(c, 'devices/c2d-burst/'), (l) => l.length >= 40)
    const bySeq = sent.map((r, i) => [r.body.sequenceNumber, `b${i}`] as const).sort((a, b) => a[0] - b[0]).map(([, body]) => body)
    expect(got.map((p) => p.payload.toString())).toEqual(bySeq)
    expect(await until(() => c2dCount('c2d-burst'), (n) => n === 0)).toBe(0)
    await c.disconnect()
  })

  it('redelivers what was not acknowledged after a reconnect, flagged DUP', async () => {
    const c = await connectDevice(t, 'c2d-redeliver')
    await c.subscribe('devices/c2d-redeliver/messages/devicebound/#', 1)
    const first = nextPublish(c, 'devices/c2d-redeliver/')
    await send('c2d-redeliver', 'once more', { 'iothub-messageid': 'again' })
    expect((await first).dup).toBe(false)
    c.destroy()
    await c.closed
    const c2 = await connectDevice(t, 'c2d-redeliver')
    const p = await until(() => publishesSoFar(c2, 'devices/c2d-redeliver/'), (l) => l.length > 0)
    expect(p[0]!.payload.toString()).toBe('once more')
    expect(p[0]!.dup).toBe(true)
    c2.send({ cmd: 'puback', messageId: p[0]!.messageId } as mqttPacket.IPubackPacket)
    expect(await until(() => c2dCount('c2d-redeliver'), (n) => n === 0)).toBe(0)
    await c2.disconnect()
  })

  it('dead-letters expired messages (Expired feedback for negative/full)', async () => {
    await t.createDevice('c2d-expire')
    await send('c2d-expire', 'too late', { 'iothub-messageid': 'exp-1', 'iothub-ack': 'full', 'iothub-expiry': new Date(Date.now() + 800).toISOString() })
    await send('c2d-expire', 'in time', { 'iothub-messageid': 'exp-2' })
    await sleep(2100)
    const c = await connectDevice(t, 'c2d-expire')
    await c.subscribe('devices/c2d-expire/messages/devicebound/#', 1)
    const got = await until(() => publishesSoFar(c, 'devices/c2d-expire/'), (l) => l.length > 0)
    expect(await untilMarker(c, 'c2d-expire')).toEqual(['in time'])
    expect(bagOf(got[0]!).get('$.exp')).toBeNull()
    const fb = (await drainFeedback()).filter((f) => f.deviceId === 'c2d-expire')
    expect(fb).toEqual([expect.objectContaining({ originalMessageId: 'exp-1', statusCode: 'Expired' })])
    await c.disconnect()
  })

  it('a takeover while a message is in flight offers it to the new connection once the old one closes', async () => {
    await t.createDevice('c2d-takeover')
    const a = await connectDevice(t, 'c2d-takeover')
    await a.subscribe('devices/c2d-takeover/messages/devicebound/#', 1)
    await send('c2d-takeover', 'held', { 'iothub-messageid': 'tk-1' })
    await until(() => publishesSoFar(a, 'devices/c2d-takeover/'), (l) => l.length > 0)
    // the new connection opens the session while the old one still holds the message's lock
    const b = await connectDevice(t, 'c2d-takeover')
    await a.closed
    const p = await until(() => publishesSoFar(b, 'devices/c2d-takeover/'), (l) => l.length > 0)
    expect(p.map((x) => x.payload.toString())).toEqual(['held'])
    b.send({ cmd: 'puback', messageId: p[0]!.messageId } as mqttPacket.IPubackPacket)
    expect(await until(() => c2dCount('c2d-takeover'), (n) => n === 0)).toBe(0)
    await b.disconnect()
  })

  it('dead-letters a message delivered maxDeliveryCount (10) times without completion', async () => {
    await t.createDevice('c2d-poison')
    await send('c2d-poison', 'poison', { 'iothub-messageid': 'p-1', 'iothub-ack': 'negative' })
    for (let i = 1; i <= 10; i++) {
      const c = await connectDevice(t, 'c2d-poison')
      if (i === 1) await c.subscribe('devices/c2d-poison/messages/devicebound/#', 1)
      const p = await until(() => publishesSoFar(c, 'devices/c2d-poison/'), (l) => l.length > 0)
      expect(p[0]!.payload.toString()).toBe('poison')
      c.destroy()
      await c.closed
    }
    const c = await connectDevice(t, 'c2d-poison')
    expect(await untilMarker(c, 'c2d-poison')).toEqual([])
    expect(await until(() => c2dCount('c2d-poison'), (n) => n === 0)).toBe(0)
    const fb = (await drainFeedback()).filter((f) => f.deviceId === 'c2d-poison')
    expect(fb).toEqual([expect.objectContaining({ originalMessageId: 'p-1', statusCode: 'DeliveryCountExceeded' })])
    await c.disconnect()
  })

  it('refuses the 51st pending message (403004), oversized messages (413001), unknown devices (404001), bad headers', async () => {
    await t.createDevice('c2d-full')
    for (let i = 0; i < 50; i++) expect((await send('c2d-full', `m${i}`)).status).toBe(200)
    const full = await send('c2d-full', 'one too many')
    expect(full.status).toBe(403)
    expect(full.body.Message).toMatch(/^ErrorCode:DeviceMaximumQueueDepthExceeded;/)
    expect(await c2dCount('c2d-full')).toBe(50)
    const big = await send('c2d-full', Buffer.alloc(64 * 1024 + 1))
    expect(big.status).toBe(413)
    expect(big.body.Message).toMatch(/^ErrorCode:MessageTooLarge;/)
    const unknown = await send('c2d-nobody', 'x')
    expect(unknown.status).toBe(404)
    expect(unknown.body.Message).toMatch(/^ErrorCode:DeviceNotFound;/)
    for (const headers of <Record<string, string>[]>[{ 'iothub-ack': 'sometimes' }, { 'iothub-expiry': 'tomorrow' }, { 'iothub-expiry': new Date(Date.now() - 1000).toISOString() }]) {
      const r = await send('c2d-full', 'x', headers)
      expect(r.status, JSON.stringify(headers)).toBe(400)
    }
    const purged = await t.rest('DELETE', '/devices/c2d-full/commands?api-version=2021-04-12')
    expect(purged.body).toEqual({ deviceId: 'c2d-full', totalMessagesPurged: 50 })
    expect(await c2dCount('c2d-full')).toBe(0)
    expect((await send('c2d-full', 'room again')).status).toBe(200)
    expect((await t.rest('DELETE', '/devices/c2d-nobody/commands')).status).toBe(404)
  })

  it('feedback: abandon makes a message receivable again; an unknown lock is 412002', async () => {
    const c = await connectDevice(t, 'c2d-fb')
    await c.subscribe('devices/c2d-fb/messages/devicebound/#', 1)
    const p = nextPublish(c, 'devices/c2d-fb/')
    await send('c2d-fb', 'x', { 'iothub-messageid': 'fb-1', 'iothub-ack': 'full' })
    c.send({ cmd: 'puback', messageId: (await p).messageId } as mqttPacket.IPubackPacket)
    const r = await until(() => t.rest('GET', '/messages/serviceBound/feedback'), (x) => x.status === 200)
    const lock = r.headers.etag!.toString().replace(/"/g, '')
    expect(r.body.some((f: any) => f.originalMessageId === 'fb-1')).toBe(true)
    expect((await t.rest('GET', '/messages/serviceBound/feedback')).status).toBe(204)
    expect((await t.rest('POST', `/messages/serviceBound/feedback/${lock}/abandon`)).status).toBe(204)
    const again = await t.rest('GET', '/messages/serviceBound/feedback')
    expect(again.status).toBe(200)
    expect(again.headers['iothub-deliverycount']).toBe('2')
    const bad = await t.rest('DELETE', '/messages/serviceBound/feedback/not-a-lock')
    expect(bad.status).toBe(412)
    expect(bad.body.Message).toMatch(/^ErrorCode:DeviceMessageLockLost;/)
    expect((await t.rest('DELETE', `/messages/serviceBound/feedback/${again.headers.etag!.toString().replace(/"/g, '')}`)).status).toBe(204)
    await c.disconnect()
  })

  it('drops the queue with its device', async () => {
    await t.createDevice('c2d-gone')
    await send('c2d-gone', 'x')
    await t.rest('DELETE', '/devices/c2d-gone', { headers: { 'If-Match': '"*"' } })
    await t.createDevice('c2d-gone')
    expect(await c2dCount('c2d-gone')).toBe(0)
    const c = await connectDevice(t, 'c2d-gone')
    await c.subscribe('devices/c2d-gone/messages/devicebound/#', 1)
    expect(await untilMarker(c, 'c2d-gone')).toEqual([])
    await c.disconnect()
  })
})
