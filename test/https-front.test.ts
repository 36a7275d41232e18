// The HTTPS port's TLS front (tls/https-front.ts): uWS behind it on loopback answers only connections
// the front opened. A client that goes round it to the loopback port, with or without a forged PROXY
// header, gets nothing and is closed; through the front the same request is answered. A HEAD
// request is answered as GET is, without a body.
import net from 'node:net'
import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import tls from 'node:tls'
import { rssAnonBytes } from './helpers/memory.js'
import { startTestHub, type TestHub } from './helpers/test-hub.js'

let t: TestHub
beforeAll(async () => { t = await startTestHub() })
afterAll(async () => { await t.stop() })

/** Sends `bytes` to the loopback port; resolves with what came back before the socket closed. */
function roundTheFront(bytes: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port: t.hub.ports.httpsBackend })
    const got: Buffer[] = []
    s.on('data', (d) => got.push(d))
    s.on('error', reject)
    s.on('close', () => resolve(Buffer.concat(got).toString()))
    s.write(bytes)
  })
}

const request = Buffer.from('GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n')

describe('the TLS front of the HTTPS port', () => {
  it('refuses a request that reaches uWS without the front, then answers the same request through it', async () => {
    expect(await roundTheFront(request)).toBe('')
    // a PROXY v2 header naming a token no live connection holds
    const forged = Buffer.concat([Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x21, 0x00, 36]), randomBytes(16), Buffer.alloc(20), request])
    expect(await roundTheFront(forged)).toBe('')
    expect((await t.rest('GET', '/health', { token: null })).status).toBe(200)
  })
})


describe('a client that pipelines requests and reads nothing', () => {
  it('is closed before the hub buffers its answers', async () => {
    for (let i = 0; i < 100; i++) await t.createDevice(`pipe-${i}`, { tags: { pad: 'x'.repeat(1000) } })
    const size = (await t.rest('GET', '/devices')).text.length
    const N = 2000 // ~120 MB of answers if the hub took them all
    const request = `GET /devices HTTP/1.1\r\nHost: localhost\r\nAuthorization: ${t.serviceToken()}\r\n\r\n`
    const socket = tls.connect({ host: '127.0.0.1', port: t.hub.ports.https, servername: 'localhost', ca: t.ca })
    await new Promise((resolve) => socket.once('secureConnect', resolve))
    socket.pause()
    socket.on('error', () => {})
    const closed = new Promise((resolve) => socket.once('close', resolve))
    global.gc?.()
    const before = rssAnonBytes(process.pid)
    for (let i = 0; i < N; i++) if (!socket.write(request)) await Promise.race([new Promise((r) => socket.once('drain', r)), closed])
    // the hub closes a client that sends requests while an answer waits for it to read
    await closed
    const grown = rssAnonBytes(process.pid) - before
    socket.destroy()
    console.log(`pipelined ${N} × ${size} B unread: RssAnon +${(grown / 2 ** 20).toFixed(0)} MB`)
    expect(grown).toBeLessThan(40 * 2 ** 20)
  }, 30_000)
})

/** Sends a HEAD request, then (once its headers are in) a GET /health on the same connection; resolves with all that came back. */
function headThenGet(head: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port: t.hub.ports.https, servername: 'localhost', ca: t.ca })
    let got = ''
    let followed = false
    socket.on('error', reject)
    socket.on('data', (d: Buffer) => {
      got += d.toString('latin1')
      if (!followed && got.includes('\r\n\r\n')) {
        followed = true
        socket.write('GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n')
      }
      // done once the GET's answer is in whole
      const second = got.indexOf('\r\n\r\n') + 4
      const rest = got.slice(second)
      const end = rest.indexOf('\r\n\r\n')
      const length = /content-length: (\d+)/i.exec(rest.slice(0, end))
      if (end >= 0 && length && rest.length >= end + 4 + Number(length[1])) { socket.destroy(); resolve(got) }
    })
    socket.on('close', () => resolve(got))
    socket.write(head)
  })
}

describe('HEAD requests', () => {
  it('are refused (405, no body) on routes that take a message from a queue: a HEAD would lock one and spend a delivery unseen', async () => {
    const { primaryKey } = await t.createDevice('head-c2d')
    const token = t.deviceToken('head-c2d', primaryKey)
    expect((await t.rest('POST', '/devices/head-c2d/messages/devicebound?api-version=2021-04-12', { raw: 'hello', headers: { 'Content-Type': 'text/plain' } })).status).toBe(200)
    const head = await t.rest('HEAD', '/devices/head-c2d/messages/devicebound?api-version=2021-04-12', { token })
    expect([head.status, head.text]).toEqual([405, ''])
    for (const path of ['/messages/serviceBound/feedback?api-version=2021-04-12', '/messages/serviceBound/filenotifications?api-version=2021-04-12']) {
      expect((await t.rest('HEAD', path)).status).toBe(405)
    }
    // the message is still there, delivered for the first time
    const got = await t.rest('GET', '/devices/head-c2d/messages/devicebound?api-version=2021-04-12', { token })
    expect([got.status, got.text, got.headers['iothub-deliverycount']]).toEqual([200, 'hello', '1'])
  })


  it('are answered as GET (status and headers) with no body; an unknown path is a 404 without a body', async () => {
    const index = await t.rest('GET', '/dashboard/', { token: null })
    const devices = await t.rest('GET', '/devices?api-version=2021-04-12')
    for (const [path, status, type, length, token] of [
      ['/dashboard/', 200, 'text/html; charset=utf-8', Buffer.byteLength(index.text), ''],
      ['/devices?api-version=2021-04-12', 200, 'application/json; charset=utf-8', Buffer.byteLength(devices.text), `Authorization: ${t.serviceToken()}\r\n`],
      ['/no/such/thing', 404, 'application/json; charset=utf-8', undefined, ''],
    ] as const) {
      // node:https parses the answer (it knows a HEAD answer has no body)
      const r = await t.rest('HEAD', path, { token: token ? undefined : null })
      expect({ path, status: r.status, type: r.headers['content-type'], text: r.text }).toEqual({ path, status, type, text: '' })
      if (length !== undefined) expect(Number(r.headers['content-length'])).toBe(length)
      // on the wire: the next bytes after the HEAD answer's headers are the next answer's status line
      const wire = await headThenGet(`HEAD ${path} HTTP/1.1\r\nHost: localhost\r\n${token}\r\n`)
      const after = wire.slice(wire.indexOf('\r\n\r\n') + 4)
      expect({ path, head: wire.slice(0, 12), after: after.slice(0, 15) }).toEqual({ path, head: `HTTP/1.1 ${status}`, after: 'HTTP/1.1 200 OK' })
    }
  })
})
