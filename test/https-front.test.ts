// The HTTPS port's TLS front (tls/https-front.ts): uWS behind it on loopback answers only connections
// the front opened. A client that goes round it to the loopback port, with or without a forged PROXY
// header, gets nothing and is closed; through the front the same request is answered.
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
