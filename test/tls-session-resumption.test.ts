// TLS session resumption on real loopback sockets: tickets over TLS 1.3 and 1.2 whose keys live in
// the data directory (a restarted server opens the old one's tickets) and rotate, session ids for
// TLS 1.2 clients without tickets, the key file's handling, and the listeners' suite choice.
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { constants } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tls from 'node:tls'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { SessionResumption, TICKET_KEY_FILE, tlsSessionOptions } from '../src/tls/session-resumption.js'
import { attachTicketKeys } from '../src/tls/ticket-key-callback.js'
import { TicketKeyRing } from '../src/tls/ticket-keys.js'
import { HttpsFront } from '../src/tls/https-front.js'
import net from 'node:net'
import { createCertificateAuthority, issueDeviceCertificate } from '../src/tls/local-pki.js'
import { TEST_PKI } from './helpers/test-hub.js'

const key = readFileSync(join(TEST_PKI, 'server.key'), 'utf8')
const cert = readFileSync(join(TEST_PKI, 'server.pem'), 'utf8')
const ca = readFileSync(join(TEST_PKI, 'ca.pem'), 'utf8')
const HOUR = 3_600_000

type ClientOptions = Omit<tls.ConnectionOptions, 'host' | 'port'>
interface Outcome { reused: boolean; protocol: string | null; cipher: string; session: Buffer | undefined; peerSubjects: string[] }

interface Served {
  port: number
  resumption: SessionResumption
  /** what the server saw of each connection, in order */
  seen: { reused: boolean; leafSubject: string | undefined }[]
  mode: string
  stop(): Promise<void>
}

let cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const c of cleanups.reverse()) await c()
  cleanups = []
})

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tls-resumption-'))
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** A server built like the hub's listeners: any client certificate or none, plus the resumption options. */
async function serve(dir: string, o: Parameters<typeof SessionResumption.open>[1] = {}, before?: (server: tls.Server) => void): Promise<Served> {
  const resumption = SessionResumption.open(dir, o)
  const seen: Served['seen'] = []
  const server = tls.createServer({ key, cert, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2', ...resumption.serverOptions('mqtt') }, (socket) => {
    seen.push({ reused: socket.isSessionReused(), leafSubject: socket.getPeerCertificate()?.subject?.CN as string | undefined })
    socket.end('ok')
  })
  before?.(server)
  const mode = resumption.attach(server)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  let stopped = false
  const stop = async () => {
    if (stopped) return
    stopped = true
    resumption.close()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
  cleanups.push(stop)
  return { port: (server.address() as AddressInfo).port, resumption, seen, mode, stop }
}

/** One connection that reads the server's "ok" and closes; the last session (ticket) it was given. */
function connect(port: number, o: ClientOptions = {}): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    let session: Buffer | undefined
    let out: Omit<Outcome, 'session'> | undefined
    const timer = setTimeout(() => { socket.destroy(); reject(new Error('connection timed out')) }, 5000)
    const socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost', ...o }, () => {
      out = { reused: socket.isSessionReused(), protocol: socket.getProtocol(), cipher: socket.getCipher().standardName, peerSubjects: [] }
    })
    socket.on('session', (s: Buffer) => { session = s })
    socket.on('data', () => {})
    socket.on('error', (e) => { clearTimeout(timer); reject(e) })
    socket.on('close', () => {
      clearTimeout(timer)
      if (!out) return reject(new Error('closed before the handshake'))
      resolve({ ...out, session })
    })
  })
}

const TLS13: ClientOptions = { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' }
const TLS12: ClientOptions = { maxVersion: 'TLSv1.2' }
const TLS12_NO_TICKETS: ClientOptions = { maxVersion: 'TLSv1.2', secureOptions: constants.SSL_OP_NO_TICKET }

async function resumes(port: number, o: ClientOptions, session: Buffer | undefined): Promise<Outcome> {
  expect(session).toBeDefined()
  return connect(port, { ...o, session })
}

describe('TLS session resumption', () => {
  it('resumes a TLS 1.3 ticket, preferring AES-128-GCM', async () => {
    const s = await serve(tempDir())
    expect(s.mode).toBe('ring')
    const first = await connect(s.port, TLS13)
    expect(first).toMatchObject({ reused: false, protocol: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256' })
    expect((await resumes(s.port, TLS13, first.session)).reused).toBe(true)
    expect(s.seen.map((x) => x.reused)).toEqual([false, true])
    // TLS 1.3 sessions resume through tickets only: none is kept in the session-id cache
    expect(s.resumption.cache!.size).toBe(0)
  })

  it('resumes a TLS 1.2 ticket', async () => {
    const s = await serve(tempDir())
    const first = await connect(s.port, TLS12)
    expect(first).toMatchObject({ reused: false, protocol: 'TLSv1.2', cipher: 'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256' })
    expect((await resumes(s.port, TLS12, first.session)).reused).toBe(true)
  })

  it('resumes a TLS 1.2 session by id for a client that takes no tickets', async () => {
    const s = await serve(tempDir())
    const first = await connect(s.port, TLS12_NO_TICKETS)
    expect(first.reused).toBe(false)
    expect(s.resumption.cache!.size).toBe(1)
    expect((await resumes(s.port, TLS12_NO_TICKETS, first.session)).reused).toBe(true)
    expect(s.resumption.cache!.stats.hits).toBe(1)
  })

  it('keeps the client certificate of a resumed session', async () => {
    const device = issueDeviceCertificate('device-1')
    const s = await serve(tempDir())
    for (const o of [TLS13, TLS12, TLS12_NO_TICKETS]) {
      const first = await connect(s.port, { ...o, key: device.keyPem, cert: device.certPem })
      expect((await resumes(s.port, { ...o, key: device.keyPem, cert: device.certPem }, first.session)).reused).toBe(true)
    }
    expect(s.seen).toEqual(Array.from({ length: 6 }, (_, i) => ({ reused: i % 2 === 1, leafSubject: 'device-1' })))
  })

  it('a server restarted on the same data directory (another command line) resumes tickets the old one issued', async () => {
    const dir = tempDir()
    const old = await serve(dir)
    const t13 = await connect(old.port, TLS13)
    const t12 = await connect(old.port, TLS12)
    await old.stop()
    // Node's default session id context hashes process.argv: a restart with other arguments must still resume
    const argv = process.argv
    process.argv = [...argv, '--restarted']
    cleanups.push(() => { process.argv = argv })
    const restarted = await serve(dir)
    expect((await resumes(restarted.port, TLS13, t13.session)).reused).toBe(true)
    expect((await resumes(restarted.port, TLS12, t12.session)).reused).toBe(true)
    // and the control: another data directory's server has other keys, and does a full handshake
    const other = await serve(tempDir())
    const elsewhere = await resumes(other.port, TLS13, t13.session)
    expect(elsewhere.reused).toBe(false)
  })

  it('after a rotation, tickets of the previous key and new tickets both resume; a key past the ticket lifetime is dropped', async () => {
    let now = Date.now()
    const s = await serve(tempDir(), { rotationMs: 12 * HOUR, lifetimeMs: 24 * HOUR, now: () => now })
    const before = await connect(s.port, TLS13)
    const before12 = await connect(s.port, TLS12)
    now += 12 * HOUR
    expect(s.resumption.store.rotateIfDue()).toBe(true)
    expect(s.resumption.store.ring.keys).toHaveLength(2)
    expect((await resumes(s.port, TLS13, before.session)).reused).toBe(true)
    expect((await resumes(s.port, TLS12, before12.session)).reused).toBe(true)
    const fresh = await connect(s.port, TLS13)
    expect(fresh.reused).toBe(false)
    expect((await resumes(s.port, TLS13, fresh.session)).reused).toBe(true)
    // the first key stopped issuing 12 h in; 24 h after that its last ticket has expired
    now += 12 * HOUR
    s.resumption.store.rotateIfDue()
    expect((await resumes(s.port, TLS13, before.session)).reused).toBe(true)
    now += 12 * HOUR
    s.resumption.store.rotateIfDue()
    expect(s.resumption.store.ring.keys).toHaveLength(3)
    expect((await resumes(s.port, TLS13, before.session)).reused).toBe(false)
    expect((await resumes(s.port, TLS13, fresh.session)).reused).toBe(true)
  })

  it('with only the documented single-key API, resumes tickets of the current key', async () => {
    const s = await serve(tempDir(), {}, (server) => {
      // hide the native ticket key callback, as a Node without it would
      const ctx = (server as unknown as { _sharedCreds: { context: Record<string, unknown> } })._sharedCreds.context
      ctx.enableTicketKeyCallback = undefined
    })
    expect(s.mode).toBe('single-key')
    const first = await connect(s.port, TLS13)
    expect((await resumes(s.port, TLS13, first.session)).reused).toBe(true)
    s.resumption.store.rotate()
    // the documented limit: a rotation ends the previous key's tickets
    expect((await resumes(s.port, TLS13, first.session)).reused).toBe(false)
    const fresh = await connect(s.port, TLS13)
    expect((await resumes(s.port, TLS13, fresh.session)).reused).toBe(true)
  })
})

describe('ticket key rotation and sharing', () => {
  it('rotates on an unref\'d timer', async () => {
    const r = SessionResumption.open(tempDir(), { rotationMs: 1200, lifetimeMs: 5000 })
    cleanups.push(() => r.close())
    const timer = (r.store as unknown as { timer: NodeJS.Timeout }).timer
    expect(timer.hasRef()).toBe(false)
    const first = r.store.ring.current.name
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no rotation within 4 s')), 4000)
      r.store.ring.onChange(() => { clearTimeout(t); resolve() })
    })
    expect(r.store.ring.current.name.equals(first)).toBe(false)
    expect(r.store.ring.keys).toHaveLength(2)
  })

  it('a ring rebuilt from a snapshot (as a worker thread would get it) opens the owner\'s tickets', async () => {
    const owner = await serve(tempDir())
    const issued = await connect(owner.port, TLS13)
    const snapshot = structuredClone(owner.resumption.store.ring.snapshot())
    const worker = tls.createServer({ key, cert, requestCert: true, rejectUnauthorized: false, ...tlsSessionOptions('mqtt') }, (s) => s.end('ok'))
    expect(attachTicketKeys(worker, TicketKeyRing.fromSnapshot(snapshot))).toBe('ring')
    await new Promise<void>((resolve) => worker.listen(0, '127.0.0.1', resolve))
    cleanups.push(() => new Promise<void>((resolve) => worker.close(() => resolve())))
    expect((await resumes((worker.address() as AddressInfo).port, TLS13, issued.session)).reused).toBe(true)
  })
})

describe('HTTPS front', () => {
  it('resumes sessions when given the hub\'s SessionResumption', async () => {
    // a backend that answers whatever follows the PROXY header with "ok"
    const backend = net.createServer((s) => { s.once('data', () => s.end('ok')); s.on('error', () => {}) })
    await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve))
    cleanups.push(() => new Promise<void>((resolve) => backend.close(() => resolve())))
    const dir = tempDir()
    const start = async () => {
      const resumption = SessionResumption.open(dir)
      const front = new HttpsFront({ key, cert, handshakeTimeoutMs: 5000, backendPort: () => (backend.address() as AddressInfo).port, resumption })
      const port = await front.listen(0, '127.0.0.1')
      const stop = () => { front.close(); resumption.close() }
      cleanups.push(stop)
      return { port, stop }
    }
    const a = await start()
    const ticket = await connect(a.port, TLS13)
    expect(ticket.cipher).toBe('TLS_AES_128_GCM_SHA256')
    const byId = await connect(a.port, TLS12_NO_TICKETS)
    expect((await resumes(a.port, TLS12_NO_TICKETS, byId.session)).reused).toBe(true)
    a.stop()
    const b = await start() // a restart
    expect((await resumes(b.port, TLS13, ticket.session)).reused).toBe(true)
  })
})

describe('ticket key file', () => {
  it('is written with mode 0600 and reloaded as it is', async () => {
    const dir = tempDir()
    const a = SessionResumption.open(dir)
    a.close()
    const file = join(dir, TICKET_KEY_FILE)
    expect(statSync(file).mode & 0o777).toBe(0o600)
    const text = readFileSync(file, 'utf8')
    const b = SessionResumption.open(dir)
    b.close()
    expect(readFileSync(file, 'utf8')).toBe(text)
    expect(b.store.ring.current.name.equals(a.store.ring.current.name)).toBe(true)
  })

  it.each([
    ['garbage', 'not json at all'],
    ['empty', ''],
    ['truncated', null],
    ['a short key', JSON.stringify({ version: 1, keys: [{ createdAt: Date.now(), key: Buffer.alloc(40).toString('base64') }] })],
    ['no keys', JSON.stringify({ version: 1, keys: [] })],
  ])('a corrupt key file (%s) is replaced, and the server still handshakes', async (_label, content) => {
    const dir = tempDir()
    const file = join(dir, TICKET_KEY_FILE)
    SessionResumption.open(dir).close()
    const original = readFileSync(file, 'utf8')
    writeFileSync(file, content ?? original.slice(0, Math.floor(original.length / 2)))
    const warnings: string[] = []
    const s = await serve(dir, { warn: (m) => warnings.push(m) })
    expect(warnings).toHaveLength(1)
    expect(warnings[0]).toMatch(/not valid: replaced/)
    const replaced = readFileSync(file, 'utf8')
    expect(replaced).not.toBe(original)
    expect(statSync(file).mode & 0o777).toBe(0o600)
    // key material never reaches a log line
    for (const k of JSON.parse(replaced).keys) expect(warnings.join('\n')).not.toContain(k.key)
    const first = await connect(s.port, TLS13)
    expect((await resumes(s.port, TLS13, first.session)).reused).toBe(true)
  })

  it('a key file that cannot be written leaves working keys in memory', async () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'not-a-dir'), '')
    const warnings: string[] = []
    const s = await serve(join(dir, 'not-a-dir'), { warn: (m) => warnings.push(m) })
    expect(warnings.join('\n')).toMatch(/not saved/)
    const first = await connect(s.port, TLS12)
    expect((await resumes(s.port, TLS12, first.session)).reused).toBe(true)
  })
})

describe('session-id cache', () => {
  it('never holds more than its bound, evicting the least recently used', async () => {
    const s = await serve(tempDir(), { cache: { maxEntries: 4 } })
    const sessions: (Buffer | undefined)[] = []
    for (let i = 0; i < 10; i++) {
      sessions.push((await connect(s.port, TLS12_NO_TICKETS)).session)
      expect(s.resumption.cache!.size).toBeLessThanOrEqual(4)
    }
    expect(s.resumption.cache!.size).toBe(4)
    expect(s.resumption.cache!.stats.evicted).toBe(6)
    expect((await resumes(s.port, TLS12_NO_TICKETS, sessions[9])).reused).toBe(true)
    expect((await resumes(s.port, TLS12_NO_TICKETS, sessions[0])).reused).toBe(false)
  })

  it('bounds bytes too, and forgets entries past their ttl', async () => {
    let now = 0
    const { SessionCache } = await import('../src/tls/session-cache.js')
    const cache = new SessionCache({ maxEntries: 1000, maxBytes: 10 * 1024, ttlMs: 1000, now: () => now })
    for (let i = 0; i < 100; i++) cache.set(Buffer.from(`id-${i}`), Buffer.alloc(1000))
    expect(cache.bytes).toBeLessThanOrEqual(10 * 1024)
    expect(cache.size).toBe(10)
    expect(cache.get(Buffer.from('id-99'))).toBeDefined()
    now += 1000
    expect(cache.get(Buffer.from('id-99'))).toBeUndefined()
    expect(cache.size).toBe(9)
  })
  it('I/O threads share the bounds out: N threads hold no more than one cache would', async () => {
    const { SharedResumption } = await import('../src/tls/session-resumption.js')
    const { sessionCacheShare, SESSION_CACHE_MAX_BYTES, SESSION_CACHE_MAX_ENTRIES } = await import('../src/tls/session-cache.js')
    const owner = SessionResumption.open(tempDir())
    cleanups.push(() => owner.close())
    const threads = Array.from({ length: 3 }, () => new SharedResumption(owner.share(), sessionCacheShare(3)))
    expect(threads.reduce((n, t) => n + t.cache!.maxEntries, 0)).toBeLessThanOrEqual(SESSION_CACHE_MAX_ENTRIES + 3)
    expect(threads.reduce((n, t) => n + t.cache!.maxBytes, 0)).toBeLessThanOrEqual(SESSION_CACHE_MAX_BYTES + 3)
  })
})

describe('cipher policy', () => {
  // every ECDSA suite Node's default list took with this certificate, but ARIA: the Azure IoT SDKs'
  // TLS 1.2 suites (GCM; CBC with SHA-2 or SHA-1 on older stacks) and mbedTLS' CCM ones
  it.each([
    'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305',
    'ECDHE-ECDSA-AES128-CCM', 'ECDHE-ECDSA-AES256-CCM', 'ECDHE-ECDSA-AES128-CCM8', 'ECDHE-ECDSA-AES256-CCM8',
    'ECDHE-ECDSA-AES128-SHA256', 'ECDHE-ECDSA-AES256-SHA384', 'ECDHE-ECDSA-AES128-SHA', 'ECDHE-ECDSA-AES256-SHA',
  ])('a TLS 1.2 client offering only %s connects', async (suite) => {
    const s = await serve(tempDir())
    expect((await connect(s.port, { maxVersion: 'TLSv1.2', ciphers: suite })).protocol).toBe('TLSv1.2')
  })

  it.each(['P-256', 'P-384', 'X25519'])('a TLS 1.3 client with only the %s group connects', async (curve) => {
    const s = await serve(tempDir())
    expect((await connect(s.port, { ...TLS13, ecdhCurve: curve })).protocol).toBe('TLSv1.3')
  })

  // in TLS 1.2 the client's groups also bound the curve of the server's ECDSA key (P-256): it must list P-256
  it.each(['P-256', 'P-256:P-384', 'X25519:P-256'])('a TLS 1.2 client with the groups %s connects', async (curves) => {
    const s = await serve(tempDir())
    expect((await connect(s.port, { ...TLS12, ecdhCurve: curves })).protocol).toBe('TLSv1.2')
  })

  it('a TLS 1.2 client with a chain of intermediates keeps only its leaf on resumption (OpenSSL stores no peer chain in a session)', async () => {
    const root = createCertificateAuthority('root')
    const intermediate = createCertificateAuthority('intermediate', { issuer: root })
    const device = issueDeviceCertificate('device-2', { ca: intermediate })
    const s = await serve(tempDir())
    const o = { ...TLS12, key: device.keyPem, cert: device.certPem + intermediate.certPem }
    const first = await connect(s.port, o)
    expect((await resumes(s.port, o, first.session)).reused).toBe(true)
    expect(s.seen.map((x) => x.leafSubject)).toEqual(['device-2', 'device-2'])
  })
})
