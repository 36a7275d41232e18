// Issue 13, bad input on the device links, each refused on its own: a link before any token, a link
// to another device's address, a message over 256 KB, a transfer without credit, garbage after the
// WebSocket upgrade; and WebSocket backpressure both ways (a peer that stops reading holds the hub to
// its output bound; one that keeps sending while held is closed).
import { createRequire } from 'node:module'
import rhea from 'rhea'
import WebSocket from 'ws'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { amqpConnect, deviceAmqpConnection, deviceAudience, logTap, next, putToken } from './helpers/amqp-client.js'
import { startTestHub, type TestHub } from './helpers/test-hub.js'
import { eventsOf, readAllEvents } from './helpers/events.js'
import { partitionOf } from '../src/shard-protocol.js'
import { DEFAULT_AMQP_LIMITS } from '../src/amqp/amqp-limits.js'
import { until } from './helpers/device-mqtt.js'

let t: TestHub
const tap = logTap()
const keys = new Map<string, string>()
beforeAll(async () => {
  t = await startTestHub({}, { logRecords: tap.records })
  for (const id of ['link-a', 'link-b', 'link-big', 'link-credit', 'link-ws', 'link-ws-hold']) keys.set(id, (await t.createDevice(id)).primaryKey)
})
afterAll(() => t.stop())

const audienceOf = (deviceId: string) => deviceAudience(deviceId)
const deviceConnection = (deviceId: string) => deviceAmqpConnection(t.hub.ports.amqp!, t.ca, deviceId, t.deviceToken(deviceId, keys.get(deviceId)!))

function detachCondition(link: rhea.link): string | undefined {
  return (link as unknown as { remote: { detach?: { error?: rhea.AmqpError } } }).remote.detach?.error?.condition
}

async function telemetrySender(conn: rhea.Connection, deviceId: string): Promise<rhea.Sender> {
  const sender = conn.open_sender({ target: { address: `/devices/${deviceId}/messages/events` } })
  await next(sender, 'sendable')
  return sender
}

/** Sends one message; resolves with the hub's outcome for it. */
function outcome(sender: rhea.Sender, msg: rhea.Message): Promise<{ state: string; condition?: string }> {
  return new Promise((resolve) => {
    const delivery = sender.send(msg)
    const done = (state: string) => (ctx: rhea.EventContext) => {
      if (ctx.delivery !== delivery) return
      resolve({ state, condition: (ctx.delivery!.remote_state as { error?: rhea.AmqpError } | undefined)?.error?.condition })
    }
    sender.on('accepted', done('accepted'))
    sender.on('rejected', done('rejected'))
    sender.on('released', done('released'))
  })
}

describe('device links refuse bad input on their own', () => {
  it('a link opened before any token is refused; after the put-token the same connection may open it', async () => {
    const conn = await amqpConnect(t.hub.ports.amqp!, t.ca)
    const early = conn.open_sender({ target: { address: '/devices/link-a/messages/events' } })
    await next(early, 'sender_close')
    expect(detachCondition(early)).toBe('amqp:unauthorized-access')
    expect(await putToken(conn, t.deviceToken('link-a', keys.get('link-a')!), audienceOf('link-a'))).toBe(200)
    const sender = await telemetrySender(conn, 'link-a')
    expect(await outcome(sender, { message_id: 'after-token', body: 'x' })).toEqual({ state: 'accepted', condition: undefined })
    expect(eventsOf(await readAllEvents(t), 'link-a').map((e) => e.systemProperties['message-id'])).toEqual(['after-token'])
    conn.close()
  })

  it('a link to another device\'s address is refused, and the device\'s own links go on', async () => {
    const conn = await deviceConnection('link-b')
    const own = await telemetrySender(conn, 'link-b')
    for (const address of ['/devices/link-a/messages/events', '/devices/LINK-B/messages/events', '/devices/link-a/twin']) {
      const foreign = conn.open_sender({ target: { address } })
      await next(foreign, 'sender_close')
      expect({ address, condition: detachCondition(foreign) }).toEqual({ address, condition: 'amqp:unauthorized-access' })
    }
    const foreignC2d = conn.open_receiver({ source: { address: '/devices/link-a/messages/devicebound' } })
    await next(foreignC2d, 'receiver_close')
    expect(detachCondition(foreignC2d)).toBe('amqp:unauthorized-access')
    expect(await outcome(own, { message_id: 'own-after-refusals', body: 'x' })).toEqual({ state: 'accepted', condition: undefined })
    expect(conn.is_open()).toBe(true)
    conn.close()
  })

  it('a message over 256 KB is rejected with message-size-exceeded; the next one is taken', async () => {
    const conn = await deviceConnection('link-big')
    const sender = await telemetrySender(conn, 'link-big')
    expect(await outcome(sender, { message_id: 'too-big', body: rhea.message.data_section(Buffer.alloc(256 * 1024 + 1, 1)) }))
      .toEqual({ state: 'rejected', condition: 'amqp:link:message-size-exceeded' })
    expect(await outcome(sender, { message_id: 'fits', body: rhea.message.data_section(Buffer.alloc(1000, 1)) })).toEqual({ state: 'accepted', condition: undefined })
    expect(eventsOf(await readAllEvents(t), 'link-big').map((e) => e.systemProperties['message-id'])).toEqual(['fits'])
    conn.close()
  })

  it('a transfer beyond the credit the hub gave closes that connection with transfer-limit-exceeded, not others', async () => {
    const bystander = await deviceConnection('link-a')
    const bystanderSender = await telemetrySender(bystander, 'link-a')
    const conn = await deviceConnection('link-credit')
    const sender = await telemetrySender(conn, 'link-credit')
    const link = sender as unknown as { credit: number }
    const credit = link.credit
    expect(credit).toBe(64)
    const closed = next(conn, 'connection_close')
    // rhea holds back what has no credit: make it believe it has more, then send one past the real credit
    link.credit = credit + 10
    for (let i = 0; i <= credit; i++) sender.send({ message_id: `c-${i}`, body: 'x' })
    await closed
    expect((conn.error as rhea.AmqpError).condition).toBe('amqp:link:transfer-limit-exceeded')
    expect(await outcome(bystanderSender, { message_id: 'bystander', body: 'x' })).toEqual({ state: 'accepted', condition: undefined })
    bystander.close()
  })
})

describe('frames for sessions the peer ended', () => {
  const frames = createRequire(import.meta.url)('rhea/lib/frames.js') as {
    amqp_frame(channel: number, performative: unknown): unknown
    disposition(fields: Record<string, unknown>): unknown
    write_frame(frame: unknown): Buffer
  }
  const socketOf = (conn: rhea.Connection) => (conn as unknown as { socket: { write(b: Buffer): void } }).socket

  it('a disposition on a channel with no session is dropped; the connection goes on', async () => {
    const conn = await amqpConnect(t.hub.ports.amqp!, t.ca)
    // what a client that settles a tick after its own `end` puts on the wire
    socketOf(conn).write(frames.write_frame(frames.amqp_frame(9, frames.disposition({ role: true, first: 0, settled: true }))))
    await tap.waitFor((r) => r.msg === 'amqp frame for an ended session dropped' && r.kind === 'disposition')
    expect(await putToken(conn, t.deviceToken('link-a', keys.get('link-a')!), audienceOf('link-a'))).toBe(200)
    conn.close()
  })
})

describe('device tokens on an open connection', () => {
  it('a device whose token lapses loses its links; one that renewed it on $cbs keeps them', async () => {
    // valid for about 2 more seconds (Azure's 5 minutes of skew included)
    const shortLived = (id: string) => t.deviceToken(id, keys.get(id)!, -298)
    const lapsing = await amqpConnect(t.hub.ports.amqp!, t.ca)
    expect(await putToken(lapsing, shortLived('link-a'), audienceOf('link-a'))).toBe(200)
    const dying = await telemetrySender(lapsing, 'link-a')
    const renewing = await amqpConnect(t.hub.ports.amqp!, t.ca)
    expect(await putToken(renewing, shortLived('link-b'), audienceOf('link-b'))).toBe(200)
    const living = await telemetrySender(renewing, 'link-b')
    expect(await putToken(renewing, t.deviceToken('link-b', keys.get('link-b')!), audienceOf('link-b'))).toBe(200)
    await next(dying, 'sender_close')
    expect(detachCondition(dying)).toBe('amqp:unauthorized-access')
    // the renewed device's link outlived the first token: a message after the other's expiry is taken
    expect(await outcome(living, { message_id: 'after-expiry', body: 'x' })).toEqual({ state: 'accepted', condition: undefined })
    expect(t.hub.edge.connectionState('link-a').connected).toBe(false)
    lapsing.close()
    renewing.close()
  }, 20_000)
})

describe('device links over WebSocket', () => {
  const url = () => `wss://localhost:${t.hub.ports.https}/$iothub/websocket`

  it('garbage after the upgrade closes that WebSocket; a device on another goes on', async () => {
    const bystander = await deviceConnection('link-a')
    const bystanderSender = await telemetrySender(bystander, 'link-a')
    const ws = new WebSocket(url(), 'AMQPWSB10', { ca: t.ca })
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)))
    ws.send(Buffer.from('GET / HTTP/1.1\r\nthis is not AMQP\r\n\r\n'))
    await closed
    await tap.waitFor((r) => r.msg === 'amqp connection refused' || r.msg === 'amqp protocol error' || r.msg === 'amqp connection dropped')
    expect(await outcome(bystanderSender, { message_id: 'after-garbage', body: 'x' })).toEqual({ state: 'accepted', condition: undefined })
    bystander.close()
  })

  /** A rhea connection over a `ws` WebSocket the test can stop reading. */
  async function overWebSocket(): Promise<{ conn: rhea.Connection; ws: () => WebSocket }> {
    const made: WebSocket[] = []
    class Tracked extends WebSocket {
      constructor(address: string, protocols: string[], options: WebSocket.ClientOptions) {
        super(address, protocols, options)
        made.push(this)
      }
    }
    const container = rhea.create_container({ id: 'ws-links-test' })
    container.on('error', () => {})
    const connect = container.websocket_connect(Tracked as never)
    const conn = container.connect({ connection_details: connect(url(), ['AMQPWSB10'], { ca: t.ca }), reconnect: false } as unknown as rhea.ConnectionOptions)
    conn.on('disconnected', () => {})
    await next(conn, 'connection_open')
    return { conn, ws: () => made[0]! }
  }

  it('the device edge works over it: put-token, telemetry settled after commit, C2D', async () => {
    const { conn } = await overWebSocket()
    expect(await putToken(conn, t.deviceToken('link-ws', keys.get('link-ws')!), audienceOf('link-ws'))).toBe(200)
    const sender = await telemetrySender(conn, 'link-ws')
    expect(await outcome(sender, { message_id: 'over-ws', body: 'x' })).toEqual({ state: 'accepted', condition: undefined })
    expect(eventsOf(await readAllEvents(t), 'link-ws').map((e) => e.systemProperties['message-id'])).toEqual(['over-ws'])
    const c2d = conn.open_receiver({ source: { address: '/devices/link-ws/messages/devicebound' }, autoaccept: false })
    await next(c2d, 'receiver_open')
    const got = next(c2d, 'message')
    expect((await t.rest('POST', '/devices/link-ws/messages/deviceBound', { raw: 'down', headers: { 'iothub-messageid': 'c2d-ws' } })).status).toBe(200)
    const ctx = await got
    expect(ctx.message!.message_id).toBe('c2d-ws')
    ctx.delivery!.accept()
    await until(() => t.hub.edge.cloudToDeviceMessageCount('link-ws'), (n) => n === 0)
    conn.close()
  })

  it('a reader that stops reading its WebSocket holds the hub to its output bound', async () => {
    const deviceId = 'link-ws-hold'
    const HELD_EVENTS = 80
    // enough telemetry that reading all of it from the start passes the output bound many times
    const writer = await deviceConnection(deviceId)
    const sender = await telemetrySender(writer, deviceId)
    for (let i = 0; i < HELD_EVENTS; i++) expect((await outcome(sender, { message_id: `hold-${i}`, body: rhea.message.data_section(Buffer.alloc(250_000, i)) })).state).toBe('accepted')
    writer.close()
    const { conn, ws } = await overWebSocket()
    expect(await putToken(conn, t.serviceToken('service'), 'localhost')).toBe(200)
    const receiver = conn.open_receiver({ source: { address: `${t.hub.eventHubName}/ConsumerGroups/$Default/Partitions/${partitionOf(deviceId, 4)}` }, credit_window: 0 })
    await next(receiver, 'receiver_open')
    const socket = (ws() as unknown as { _socket: { pause(): void; resume(): void } })._socket
    socket.pause()
    receiver.add_credit(1000)
    const waiting = await tap.waitFor((r) => r.msg === 'amqp output waits for the peer')
    let received = 0
    receiver.on('message', (ctx: rhea.EventContext) => {
      if (String(ctx.message!.message_id).startsWith('hold-')) received++
    })
    socket.resume()
    await until(() => received, (n) => n === HELD_EVENTS, 15_000)
    expect(received).toBe(HELD_EVENTS)
    conn.close()
    // what the hub held for it never passed the bound (1 MB) by more than one event and a frame
    const closed = await tap.waitFor((r) => r.msg === 'amqp connection closed' && r.peer === waiting.peer)
    expect(closed.peakOutgoingBytes).toBeLessThanOrEqual(DEFAULT_AMQP_LIMITS.maxOutgoingBufferedBytes + 250_000 + 70_000)
  }, 30_000)
})
