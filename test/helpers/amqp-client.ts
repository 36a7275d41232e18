// AMQP clients for limit tests: raw TLS sockets that send exactly the bytes a test says, a rhea
// client connection, a CBS put-token, and a log tap to wait for a hub's log record.
import { createRequire } from 'node:module'
import net from 'node:net'
import tls from 'node:tls'
import rhea from 'rhea'

/** The plain AMQP 1.0 protocol header (no SASL). */
export const AMQP_HEADER = Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 1, 0, 0])
export const SASL_HEADER = Buffer.from([0x41, 0x4d, 0x51, 0x50, 3, 1, 0, 0])

/** A frame: size, data offset 2, type, channel, then `body`. */
export function frame(body: Buffer = Buffer.alloc(0), type = 0, channel = 0): Buffer {
  const head = Buffer.alloc(8)
  head.writeUInt32BE(8 + body.length, 0)
  head[4] = 2
  head[5] = type
  head.writeUInt16BE(channel, 6)
  return Buffer.concat([head, body])
}

/** Only a frame's 8-byte header, claiming `size` bytes. */
export function frameHeader(size: number): Buffer {
  const head = frame()
  head.writeUInt32BE(size, 0)
  return head
}

const frames = createRequire(import.meta.url)('rhea/lib/frames.js') as {
  open(fields: Record<string, unknown>): unknown
  amqp_frame(channel: number, performative: unknown): unknown
  write_frame(frame: unknown): Buffer
}

/** An encoded AMQP open frame. */
export function openFrame(containerId = 'raw-client'): Buffer {
  return frames.write_frame(frames.amqp_frame(0, frames.open({ container_id: containerId })))
}

/** A TLS socket to the hub, once its handshake is done. */
export function tlsConnect(port: number, ca: string): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost' })
    socket.once('secureConnect', () => resolve(socket))
    socket.once('error', reject)
    socket.once('close', () => reject(new Error('closed during the TLS handshake')))
  })
}

/** A plain TCP socket to the hub (no TLS at all). */
export function tcpConnect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port })
    socket.once('connect', () => resolve(socket))
    socket.once('error', reject)
  })
}

/** Resolves when `socket` closes, whoever closed it (it reads and drops what arrives, to see the end). */
export function closeOf(socket: net.Socket): Promise<void> {
  socket.on('error', () => {})
  if (socket.destroyed) return Promise.resolve()
  socket.resume()
  return new Promise((resolve) => socket.once('close', () => resolve()))
}

/** Resolves with the first `bytes` bytes the peer sends on `socket`. */
export function firstBytes(socket: net.Socket, bytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let length = 0
    const onData = (c: Buffer) => {
      chunks.push(c)
      length += c.length
      if (length < bytes) return
      socket.off('data', onData)
      resolve(Buffer.concat(chunks).subarray(0, bytes))
    }
    socket.on('data', onData)
    socket.once('close', () => reject(new Error(`closed after ${length} of ${bytes} bytes`)))
  })
}

export interface AmqpClientOptions { idle_time_out?: number; max_frame_size?: number }

/** A rhea client connection to the hub, once the hub answered its open. */
export function amqpConnect(port: number, ca: string, options: AmqpClientOptions = {}): Promise<rhea.Connection> {
  const container = rhea.create_container({ id: 'limits-test' })
  container.on('error', () => {}) // tests look at the events they expect
  const conn = container.connect({
    host: '127.0.0.1', port, transport: 'tls', servername: 'localhost', ca, reconnect: false, ...options,
  } as rhea.ConnectionOptions)
  conn.on('disconnected', () => {})
  conn.on('connection_error', () => {})
  return new Promise((resolve, reject) => {
    conn.once('connection_open', () => resolve(conn))
    conn.once('disconnected', (ctx: rhea.EventContext) => reject(ctx.error ?? new Error('disconnected before open')))
  })
}

/** The error the hub closed `conn` with. */
export function closeError(conn: rhea.Connection): Promise<rhea.AmqpError | undefined> {
  return new Promise((resolve) => {
    conn.once('connection_close', () => resolve(conn.error as rhea.AmqpError | undefined))
  })
}

/** Resolves with the next `event` on `emitter`. */
export function next(emitter: { once(e: string, f: (ctx: rhea.EventContext) => void): unknown }, event: string): Promise<rhea.EventContext> {
  return new Promise((resolve) => emitter.once(event, resolve))
}

/** Puts `token` on `$cbs` for `audience`; resolves with the reply's status code. */
export async function putToken(conn: rhea.Connection, token: string, audience: string): Promise<number> {
  const replyTo = `cbs-reply-${Math.random().toString(36).slice(2)}`
  const receiver = conn.open_receiver({ source: { address: '$cbs' }, target: { address: replyTo } })
  const sender = conn.open_sender({ target: { address: '$cbs' } })
  await Promise.all([next(receiver, 'receiver_open'), next(sender, 'sendable')])
  const reply = next(receiver, 'message')
  sender.send({
    to: '$cbs', reply_to: replyTo, message_id: replyTo,
    application_properties: { operation: 'put-token', type: 'servicebus.windows.net:sastoken', name: audience }, body: token,
  })
  const status = (await reply).message!.application_properties!['status-code'] as number
  sender.close()
  receiver.close()
  return status
}

/** A hub's log records, with a way to wait for one. */
export function logTap(): { records: Record<string, unknown>[]; waitFor(match: (r: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>> } {
  const records: Record<string, unknown>[] = []
  const waiters = new Set<() => void>()
  const push = records.push.bind(records)
  records.push = (...r) => {
    const n = push(...r)
    for (const w of [...waiters]) w()
    return n
  }
  return {
    records,
    waitFor: (match, timeoutMs = 10_000) => new Promise((resolve, reject) => {
      const found = () => records.find(match)
      const check = () => {
        const r = found()
        if (!r) return
        waiters.delete(check)
        clearTimeout(timer)
        resolve(r)
      }
      const timer = setTimeout(() => { waiters.delete(check); reject(new Error('no such log record')) }, timeoutMs)
      waiters.add(check)
      check()
    }),
  }
}

/** A put-token's audience as azure-iot-device-amqp names it: the token's still-encoded resource. */
export const deviceAudience = (deviceId: string, host = 'localhost') => encodeURIComponent(`${host}/devices/${deviceId}`)

/** A connection that put a device's own token on $cbs (it must be accepted). */
export async function deviceAmqpConnection(port: number, ca: string, deviceId: string, token: string): Promise<rhea.Connection> {
  const conn = await amqpConnect(port, ca)
  const status = await putToken(conn, token, deviceAudience(deviceId))
  if (status !== 200) throw new Error(`put-token for ${deviceId}: ${status}`)
  return conn
}
