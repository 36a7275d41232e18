// Issue 13's review as an attacker and a slow reader, each finding held by a test: a disposition
// range that would walk 2^30 ids before any token, a device that holds one C2D message unsettled
// while its session's ring of 2,048 deliveries fills, pre-settled telemetry filling the hub's
// incoming ring, a token for a device whose id differs only in case extending another's, C2D
// deliveries kept for a detached link, and AMQP over WebSocket closing a device that used its credit.
import { createRequire } from 'node:module'
import rhea from 'rhea'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { amqpConnect, deviceAmqpConnection, deviceAudience, logTap, next, putToken } from './helpers/amqp-client.js'
import { eventsOf, readAllEvents } from './helpers/events.js'
import { until } from './helpers/device-mqtt.js'
import { startTestHub, type TestHub } from './helpers/test-hub.js'

let t: TestHub
const tap = logTap()
const keys = new Map<string, string>()
beforeAll(async () => {
  t = await startTestHub({}, { logRecords: tap.records })
  for (const id of ['rv-ring', 'rv-presettled', 'rv-case', 'RV-CASE', 'rv-c2d', 'rv-ws']) keys.set(id, (await t.createDevice(id)).primaryKey)
})
afterAll(() => t.stop())

const audienceOf = (id: string) => deviceAudience(id)
const deviceConnection = (id: string, ttl?: number) => deviceAmqpConnection(t.hub.ports.amqp!, t.ca, id, t.deviceToken(id, keys.get(id)!, ttl))
const types = createRequire(import.meta.url)('rhea/lib/types.js') as Record<'wrap_uint' | 'wrap_string' | 'wrap_double' | 'wrap_ulong' | 'Null', (v?: unknown) => unknown>
const frames = createRequire(import.meta.url)('rhea/lib/frames.js') as {
  amqp_frame(channel: number, performative: unknown): unknown
  disposition(fields: Record<string, unknown>): unknown
  write_frame(frame: unknown): Buffer
}

describe('issue 13 review findings', () => {
  it('a disposition for ids 0..2^30, before any token, is cut to what can be outstanding; the connection goes on', async () => {
    const conn = await amqpConnect(t.hub.ports.amqp!, t.ca)
    const session = (conn as unknown as { create_session(): rhea.Session & { begin(): void; local: { channel: number } } }).create_session()
    session.begin()
    await next(session as never, 'session_open')
    const socket = (conn as unknown as { socket: { write(b: Buffer): void } }).socket
    for (const role of [true, false]) {
      socket.write(frames.write_frame(frames.amqp_frame(session.local.channel, frames.disposition({ role, first: 0, last: 2 ** 30, settled: true, state: (rhea.message as unknown as { accepted(): unknown }).accepted() }))))
    }
    await tap.waitFor((r) => r.msg === 'amqp frame for an ended session dropped' && r.kind === 'disposition range')
    // ids in other types than uint made rhea's walk endless (2^53 + 1 is 2^53 again): the frame is dropped
    for (const [first, last] of [[types.wrap_uint(0), types.wrap_string('30000000')], [types.wrap_double(2 ** 53), types.Null()], [types.wrap_ulong(2 ** 53), types.wrap_ulong(2 ** 53)], [types.wrap_double(-Infinity), types.wrap_uint(0)]]) {
      const performative = frames.disposition({ role: true, first: 0, last: 1, settled: true }) as { value: unknown[] }
      performative.value[1] = first
      performative.value[2] = last
      socket.write(frames.write_frame(frames.amqp_frame(session.local.channel, performative)))
    }
    await tap.waitFor((r) => r.msg === 'amqp frame for an ended session dropped' && r.kind === 'disposition malformed')
    expect(await putToken(conn, t.deviceToken('rv-ring', keys.get('rv-ring')!), audienceOf('rv-ring'))).toBe(200)
    conn.close()
  })

  it('a device that holds a C2D message unsettled while the hub answers 2,100 twin requests is closed, not wedged', async () => {
    const conn = await deviceConnection('rv-ring')
    const c2d = conn.open_receiver({ source: { address: '/devices/rv-ring/messages/devicebound' }, autoaccept: false })
    await next(c2d, 'receiver_open')
    const held = next(c2d, 'message')
    await until(async () => (await t.rest('POST', '/devices/rv-ring/messages/deviceBound', { raw: 'held', headers: { 'iothub-messageid': 'held' } })).status, (s) => s === 200)
    await held
    const answers = conn.open_receiver({ source: { address: '/devices/rv-ring/twin' } })
    const requests = conn.open_sender({ target: { address: '/devices/rv-ring/twin' } })
    await Promise.all([next(answers, 'receiver_open'), next(requests, 'sendable')])
    let got = 0
    answers.on('message', () => { got++ })
    const closed = next(conn, 'connection_close')
    for (let sent = 0; sent < 2100 && answers.is_open(); sent++) {
      requests.send({ correlation_id: `r${sent}`, message_annotations: { operation: 'GET' }, body: '' })
      if (sent - got >= 16) await until(() => got, (n) => sent - n < 16 || !answers.is_open(), 5000)
    }
    await closed
    // the whole connection goes: rhea would keep the session's ring, and what it holds, otherwise
    expect((conn.error as rhea.AmqpError).condition).toBe('amqp:resource-limit-exceeded')
    const record = await tap.waitFor((r) => r.msg === 'connection closed' && r.deviceId === 'rv-ring' && r.reason !== 'connection lost')
    expect(record.reason).toBe('the device leaves what the hub sends unsettled')
    expect(got).toBeGreaterThan(1900)
  }, 30_000)

  it('2,100 pre-settled messages do not close the session\'s window: an unsettled one after them is accepted', async () => {
    const conn = await deviceConnection('rv-presettled')
    const fast = conn.open_sender({ target: { address: '/devices/rv-presettled/messages/events' }, snd_settle_mode: 1 } as rhea.SenderOptions)
    await next(fast, 'sendable')
    for (let i = 0; i < 2100; i++) {
      if (!fast.sendable()) await until(() => fast.sendable(), (ok) => ok)
      fast.send({ message_id: `p${i}`, body: 'x' })
    }
    const after = conn.open_sender({ target: { address: '/devices/rv-presettled/messages/events' } })
    await next(after, 'sendable')
    after.send({ message_id: 'unsettled-after', body: 'y' })
    await next(after, 'accepted')
    expect(eventsOf(await readAllEvents(t), 'rv-presettled').at(-1)!.systemProperties['message-id']).toBe('unsettled-after')
    conn.close()
  }, 30_000)

  it('a token for a device whose id differs only in case neither replaces nor extends the other\'s', async () => {
    const conn = await deviceConnection('rv-case', -298) // about 2 s left
    const link = conn.open_sender({ target: { address: '/devices/rv-case/messages/events' } })
    await next(link, 'sendable')
    expect(await putToken(conn, t.deviceToken('RV-CASE', keys.get('RV-CASE')!), audienceOf('RV-CASE'))).toBe(200)
    await next(link, 'sender_close')
    expect((link as unknown as { remote: { detach: { error: rhea.AmqpError } } }).remote.detach.error.condition).toBe('amqp:unauthorized-access')
    expect(t.hub.edge.connectionState('rv-case').connected).toBe(false)
    expect(t.hub.edge.connectionState('RV-CASE').connected).toBe(true)
    conn.close()
  }, 20_000)

  it('a device whose id holds `%` attaches with the id as written (Node SDK) and URL-encoded (.NET SDK)', async () => {
    const id = 'rv%41'
    const { primaryKey } = await t.createDevice(id)
    keys.set(id, primaryKey)
    const conn = await deviceConnection(id)
    for (const written of [id, encodeURIComponent(id)]) {
      const sender = conn.open_sender({ target: { address: `/devices/${written}/messages/events` } })
      await next(sender, 'sendable')
      sender.send({ message_id: `via-${written}`, body: 'x' })
      await next(sender, 'accepted')
      sender.close()
    }
    expect(eventsOf(await readAllEvents(t), id).map((e) => e.systemProperties['message-id'])).toEqual(['via-rv%41', 'via-rv%2541'])
    // and not as another device whose id it decodes to
    const other = conn.open_sender({ target: { address: '/devices/rvA/messages/events' } })
    await next(other, 'sender_close')
    conn.close()
  })

  it('C2D deliveries of a detached link are let go (they come again on the next link)', async () => {
    const conn = await deviceConnection('rv-c2d')
    for (let i = 0; i < 3; i++) expect((await t.rest('POST', '/devices/rv-c2d/messages/deviceBound', { raw: `m${i}`, headers: { 'iothub-messageid': `m${i}` } })).status).toBe(200)
    const session = () => (t.hub.edge as unknown as { byClientId: Map<string, { c2dInFlight: Map<unknown, number> }> }).byClientId.get('rv-c2d')!
    for (let cycle = 0; cycle < 3; cycle++) {
      const c2d = conn.open_receiver({ source: { address: '/devices/rv-c2d/messages/devicebound' }, autoaccept: false })
      let got = 0
      c2d.on('message', () => { got++ })
      await until(() => got, (n) => n === 3)
      c2d.close()
      await next(c2d, 'receiver_close')
      await until(() => session().c2dInFlight.size, (n) => n === 0)
      expect(session().c2dInFlight.size).toBe(0)
    }
    conn.close()
  }, 20_000)
})

describe('AMQP over WebSocket', () => {
  it('a device held by the hub while it sends 64 messages of 200 KB, as its credit allows, is served once released', async () => {
    const { default: WebSocket } = await import('ws')
    const container = rhea.create_container({ id: 'rv-ws' })
    container.on('error', () => {})
    const connect = container.websocket_connect(WebSocket as never)
    const conn = container.connect({ connection_details: connect(`wss://localhost:${t.hub.ports.https}/$iothub/websocket`, ['AMQPWSB10'], { ca: t.ca }), reconnect: false } as unknown as rhea.ConnectionOptions)
    conn.on('disconnected', () => {})
    await next(conn, 'connection_open')
    expect(await putToken(conn, t.deviceToken('rv-ws', keys.get('rv-ws')!), audienceOf('rv-ws'))).toBe(200)
    const sender = conn.open_sender({ target: { address: '/devices/rv-ws/messages/events' } })
    await next(sender, 'sendable')
    let accepted = 0
    sender.on('accepted', () => { accepted++ })
    const credit = (sender as unknown as { credit: number }).credit
    // the hub-wide hold (as when the shards fall behind): every byte the credit lets in arrives while held
    const edge = t.hub.edge as unknown as { hold(on: boolean): void }
    edge.hold(true)
    for (let i = 0; i < credit; i++) sender.send({ message_id: `w${i}`, body: rhea.message.data_section(Buffer.alloc(200_000, i)) })
    // every byte the credit let in is with the hub, held, before the release
    const heldBytes = async () => Number(/^hyperhub_websocket_held_input_bytes (\d+)$/m.exec((await t.rest('GET', '/metrics')).text)?.[1] ?? 0)
    await until(heldBytes, (n) => n >= credit * 200_000 || !conn.is_open(), 10_000)
    edge.hold(false)
    await until(() => accepted, (n) => n === credit || !conn.is_open(), 15_000)
    expect({ accepted, open: conn.is_open() }).toEqual({ accepted: 64, open: true })
    conn.close()
  }, 30_000)
})
