// Where the memory of an idle TLS connection goes: a node:tls server built like the hub's MQTT
// listener (ECDSA certificate from local-pki, the connection gate, requestCert with any certificate
// taken, setNoDelay, a data/error/close listener per socket) holds N idle connections that a child
// process opened (so the client's memory is not counted), each having sent a few bytes and read a
// few back, as an MQTT CONNECT/CONNACK would. Each variant runs in a fresh server process; the runs
// are interleaved. Reports process.memoryUsage() and RssAnon deltas per connection, after a GC.
// --snapshot: one more run of the named variants with heap snapshots before and after, summarised
// as the heap's growth per connection by constructor.
// Usage: npx tsx bench/tls-idle-memory.ts [--n 2000 --runs 3 --variants tcp,tls,... --snapshot tcp,tls]
// Loopback only; every loop is bounded in count and time.
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tls from 'node:tls'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import v8 from 'node:v8'
import { ConnectionGate } from '../src/tls/connection-gate.js'
import { ensureLocalPki, issueDeviceCertificate } from '../src/tls/local-pki.js'
import { peerCertificateChain } from '../src/tls/peer-chain.js'
import { SessionResumption } from '../src/tls/session-resumption.js'

interface Variant {
  about: string
  tcp?: boolean
  requestCert?: boolean
  resumption?: boolean
  noDelay?: boolean
  keepAlive?: boolean
  /** the client presents a device certificate */
  clientCert?: boolean
  /** the server reads the peer chain, as the hub does at CONNECT for an X.509 device */
  readPeer?: boolean
  /** the client offers TLS 1.2 at most */
  tls12?: boolean
  /** no application bytes after the handshake */
  silent?: boolean
  /** the client resumes a session (ticket) from its warm-up connections */
  resume?: boolean
  /** once connected, 32 KiB in and 8 KiB out (a large message each way), then idle */
  traffic?: boolean
  /** extra environment for the server process (allocator settings) */
  env?: Record<string, string>
}

const HUB = { requestCert: true, noDelay: true }
/** Debian's libjemalloc2, when installed: an allocator to compare glibc's with */
const JEMALLOC = '/usr/lib/x86_64-linux-gnu/libjemalloc.so.2'
const VARIANTS: Record<string, Variant> = {
  tcp: { about: 'plain TCP, same handlers', tcp: true, noDelay: true },
  tls: { about: "the hub's listener today", ...HUB },
  'tls-no-request-cert': { about: 'requestCert false', ...HUB, requestCert: false },
  'tls-resumption': { about: '+ session-resumption options and cache listeners', ...HUB, resumption: true },
  'tls-no-nodelay': { about: 'no setNoDelay', ...HUB, noDelay: false },
  'tls-keepalive': { about: '+ setKeepAlive(true, 60 s)', ...HUB, keepAlive: true },
  'tls-client-cert': { about: 'client sends a device certificate', ...HUB, clientCert: true },
  'tls-client-cert-read': { about: '… and the server reads the peer chain', ...HUB, clientCert: true, readPeer: true },
  'tls12': { about: 'client at TLS 1.2', ...HUB, tls12: true },
  'tls-silent': { about: 'no bytes after the handshake', ...HUB, silent: true },
  'tls-resumed': { about: 'client resumes a ticket (resumption options on)', ...HUB, resumption: true, resume: true },
  'tls-client-cert-resumed': { about: 'client certificate, ticket resumed', ...HUB, resumption: true, resume: true, clientCert: true },
  'tls-after-traffic': { about: '32 KiB in, 8 KiB out once, then idle', ...HUB, traffic: true },
  'tcp-after-traffic': { about: 'TCP: 32 KiB in, 8 KiB out once, then idle', tcp: true, noDelay: true, traffic: true },
  'tls-mmap64k': { about: 'glibc mmap_threshold=65536 (each 64 KiB read buffer its own mapping)', ...HUB, env: { GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=65536' } },
  'tls-mmap16k': { about: 'glibc mmap_threshold=16384', ...HUB, env: { GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=16384' } },
  'tls-arena1': { about: 'glibc arena_max=1', ...HUB, env: { GLIBC_TUNABLES: 'glibc.malloc.arena_max=1' } },
  ...(existsSync(JEMALLOC) ? {
    'tcp-jemalloc': { about: 'plain TCP, jemalloc (LD_PRELOAD)', tcp: true, noDelay: true, env: { LD_PRELOAD: JEMALLOC } },
    'tls-jemalloc': { about: "the hub's listener, jemalloc (LD_PRELOAD)", ...HUB, env: { LD_PRELOAD: JEMALLOC } },
    'tls-client-cert-jemalloc': { about: 'client certificate, jemalloc', ...HUB, clientCert: true, env: { LD_PRELOAD: JEMALLOC } },
  } : {}),
}

const CONNECT = Buffer.alloc(40, 0x10) // the size of a SAS CONNECT is ~300 B; a few bytes show the same buffers
const CONNACK = Buffer.from([0x20, 0x02, 0x00, 0x00])
const BIG_IN = 32 * 1024
const BIG_OUT = Buffer.alloc(8 * 1024, 0x30)
const CLIENT_DEADLINE_MS = 180_000
const SELF = fileURLToPath(import.meta.url)

const { values } = parseArgs({
  options: {
    role: { type: 'string', default: 'orchestrator' },
    variant: { type: 'string', default: 'tls' },
    n: { type: 'string', default: '2000' },
    runs: { type: 'string', default: '3' },
    variants: { type: 'string', default: Object.keys(VARIANTS).join(',') },
    snapshot: { type: 'string', default: '' },
    port: { type: 'string', default: '0' },
    pki: { type: 'string', default: '' },
    'snapshot-run': { type: 'boolean', default: false },
    /** exit with the connections open: under heaptrack, what is "leaked" is what they held */
    'leak-at-exit': { type: 'boolean', default: false },
  },
})
const N = Number(values.n)

function rssAnonBytes(): number {
  const m = /RssAnon:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))
  return Number(m?.[1] ?? 0) * 1024
}

async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    await new Promise((r) => setTimeout(r, 100))
    globalThis.gc?.()
  }
}

interface Sample { rss: number; rssAnon: number; heapUsed: number; external: number; arrayBuffers: number }
function sample(): Sample {
  const m = process.memoryUsage()
  return { rss: m.rss, rssAnon: rssAnonBytes(), heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers }
}

/** Self size and count per node name; a snapshot's heap by constructor. */
function heapByConstructor(file: string): Map<string, { size: number; count: number }> {
  const snap = JSON.parse(readFileSync(file, 'utf8'))
  const fields: string[] = snap.snapshot.meta.node_fields
  const types: string[] = snap.snapshot.meta.node_types[0]
  const [iType, iName, iSize] = ['type', 'name', 'self_size'].map((f) => fields.indexOf(f))
  const nodes: number[] = snap.nodes
  const out = new Map<string, { size: number; count: number }>()
  for (let i = 0; i < nodes.length; i += fields.length) {
    const type = types[nodes[i + iType!]!]!
    const name = type === 'object' || type === 'closure' || type === 'native' ? `${type}:${snap.strings[nodes[i + iName!]!]}` : `(${type})`
    const e = out.get(name) ?? { size: 0, count: 0 }
    e.size += nodes[i + iSize!]!
    e.count++
    out.set(name, e)
  }
  return out
}

async function server(name: string): Promise<void> {
  const v = VARIANTS[name]
  if (!v) throw new Error(`no variant ${name}`)
  const pkiDir = mkdtempSync(join(tmpdir(), 'tls-idle-memory-'))
  const pki = ensureLocalPki(pkiDir, ['localhost', '127.0.0.1'])
  const key = readFileSync(pki.serverKeyFile, 'utf8')
  const cert = readFileSync(pki.serverCertFile, 'utf8')
  const sockets = new Set<net.Socket>()
  let secured = 0
  const handle = (socket: net.Socket) => {
    secured++
    sockets.add(socket)
    if (v.noDelay) socket.setNoDelay(true)
    if (v.keepAlive) socket.setKeepAlive(true, 60_000)
    let answered = false
    let received = 0
    socket.on('data', (d: Buffer) => {
      received += d.length
      if (answered || received < (v.traffic ? BIG_IN : 1)) return
      answered = true
      if (v.readPeer) peerCertificateChain(socket as tls.TLSSocket)
      socket.write(v.traffic ? BIG_OUT : CONNACK)
    })
    socket.on('error', () => {})
    socket.on('close', () => sockets.delete(socket))
  }
  let resumption: SessionResumption | undefined
  let srv: net.Server
  if (v.tcp) srv = net.createServer(handle)
  else {
    const gate = new ConnectionGate({ handshakeTimeoutMs: 10_000, maxUnauthenticatedPerAddress: Infinity, maxConnectionsPerAddress: Infinity })
    if (v.resumption) resumption = SessionResumption.open(join(pkiDir, 'tls'))
    const options: tls.TlsOptions = { key, cert, ...(v.requestCert ? { requestCert: true, rejectUnauthorized: false } : {}), ...resumption?.serverOptions('mqtt') }
    const t = gate.createServer(options, handle)
    resumption?.attach(t)
    srv = t
  }
  await new Promise<void>((r) => srv.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, r))
  const port = (srv.address() as net.AddressInfo).port
  const client = spawn(process.execPath, ['--import', 'tsx', SELF, '--role', 'client', '--variant', name, '--n', String(N), '--port', String(port), '--pki', pkiDir], {
    stdio: ['pipe', 'pipe', 'inherit'],
    // the client's allocator (and a heaptrack of the server) is not what is measured
    env: { ...process.env, LD_PRELOAD: '', GLIBC_TUNABLES: '' },
  })
  const lines = lineReader(client)
  await lines.next('WARM') // the client's warm-up connections are closed: lazy one-time state is allocated
  await settle()
  const snapshotting = values['snapshot-run']
  const before = sample()
  const snapBefore = snapshotting ? v8.writeHeapSnapshot(join(pkiDir, 'before.heapsnapshot')) : ''
  client.stdin!.write('go\n')
  await lines.next('READY')
  const deadline = Date.now() + 30_000
  while (secured - 50 < N && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
  await new Promise((r) => setTimeout(r, 500))
  await settle()
  const after = sample()
  const held = sockets.size
  const perConn = Object.fromEntries(Object.entries(after).map(([k, x]) => [k, Math.round((x - before[k as keyof Sample]) / held)]))
  let top: { name: string; bytes: number; count: number }[] = []
  if (snapshotting) {
    const snapAfter = v8.writeHeapSnapshot(join(pkiDir, 'after.heapsnapshot'))
    const a = heapByConstructor(snapAfter), b = heapByConstructor(snapBefore)
    top = [...a].map(([k, e]) => ({ name: k, bytes: (e.size - (b.get(k)?.size ?? 0)) / held, count: (e.count - (b.get(k)?.count ?? 0)) / held }))
      .sort((x, y) => y.bytes - x.bytes).slice(0, 15)
  }
  console.log(JSON.stringify({ variant: name, held, perConn, top }))
  if (values['leak-at-exit']) { client.kill(); process.exit(0) }
  client.stdin!.end()
  await new Promise((r) => client.once('exit', r))
  for (const s of sockets) s.destroy()
  resumption?.close()
  srv.close()
  rmSync(pkiDir, { recursive: true, force: true })
  process.exit(0)
}

function lineReader(child: ChildProcess): { next(want: string): Promise<string> } {
  let buffered = ''
  const waiting: { want: string; resolve: (l: string) => void }[] = []
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    buffered += d
    let i
    while ((i = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, i)
      buffered = buffered.slice(i + 1)
      const w = waiting.findIndex((x) => line.startsWith(x.want))
      if (w >= 0) waiting.splice(w, 1)[0]!.resolve(line)
    }
  })
  return {
    next: (want) => new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no ${want} from the child`)), CLIENT_DEADLINE_MS)
      waiting.push({ want, resolve: (l) => { clearTimeout(t); resolve(l) } })
    }),
  }
}

async function client(name: string): Promise<void> {
  const v = VARIANTS[name]!
  setTimeout(() => process.exit(2), CLIENT_DEADLINE_MS).unref()
  const port = Number(values.port)
  const ca = readFileSync(join(values.pki!, 'ca.pem'))
  const device = v.clientCert ? issueDeviceCertificate('device-1') : undefined
  const held: net.Socket[] = []
  let session: Buffer | undefined
  const open = () => new Promise<net.Socket>((resolve, reject) => {
    const s: net.Socket = v.tcp
      ? net.connect({ host: '127.0.0.1', port }, () => ready())
      : tls.connect({
        host: '127.0.0.1', port, ca, servername: 'localhost', ...(v.tls12 ? { maxVersion: 'TLSv1.2' as const } : {}),
        ...(device ? { key: device.keyPem, cert: device.certPem } : {}), ...(v.resume && session ? { session } : {}),
      }, () => ready())
    if (v.resume) s.on('session', (x: Buffer) => { session ??= x })
    const timer = setTimeout(() => { s.destroy(); reject(new Error('connect timed out')) }, 20_000)
    let got = 0
    const ready = () => {
      if (v.silent) { clearTimeout(timer); return resolve(s) }
      s.write(v.traffic ? Buffer.alloc(BIG_IN, 0x31) : CONNECT)
      const want = v.traffic ? BIG_OUT.length : CONNACK.length
      s.on('data', (d: Buffer) => { got += d.length; if (got >= want) { clearTimeout(timer); resolve(s) } })
    }
    s.on('error', (e) => { clearTimeout(timer); reject(e) })
  })
  const openMany = async (count: number) => {
    let next = 0
    await Promise.all(Array.from({ length: Math.min(100, count) }, async () => {
      while (next < count) { next++; held.push(await open()) }
    }))
  }
  await openMany(50)
  for (const s of held.splice(0)) s.destroy()
  process.stdout.write('WARM\n')
  await new Promise<void>((r) => process.stdin.once('data', () => r()))
  await openMany(N)
  process.stdout.write(`READY ${held.length}\n`)
  process.stdin.on('end', () => process.exit(0))
  process.stdin.resume()
}

async function orchestrate(): Promise<void> {
  const names = values.variants!.split(',').filter(Boolean)
  for (const n of names) if (!VARIANTS[n]) throw new Error(`no variant ${n}`)
  const runOne = (name: string, snapshot: boolean) => new Promise<{ perConn: Sample; held: number; top: { name: string; bytes: number; count: number }[] }>((resolve, reject) => {
    const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', SELF, '--role', 'server', '--variant', name, '--n', String(N), ...(snapshot ? ['--snapshot-run'] : [])],
      { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...VARIANTS[name]!.env } })
    let out = ''
    child.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d })
    const t = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${name} took too long`)) }, CLIENT_DEADLINE_MS + 60_000)
    child.on('exit', (code) => {
      clearTimeout(t)
      const line = out.split('\n').find((l) => l.startsWith('{'))
      if (code !== 0 || !line) return reject(new Error(`${name} exited ${code}: ${out}`))
      resolve(JSON.parse(line))
    })
  })
  const results = new Map<string, Sample[]>()
  const runs = Number(values.runs)
  console.log(`idle connections: ${N}, runs: ${runs}, node ${process.version}, OpenSSL ${process.versions.openssl}`)
  for (let run = 1; run <= runs; run++) {
    const order = run % 2 === 0 ? [...names].reverse() : names
    for (const name of order) {
      const r = await runOne(name, false)
      ;(results.get(name) ?? results.set(name, []).get(name)!).push(r.perConn)
      console.log(`run ${run} ${name}: held ${r.held}, per connection ${JSON.stringify(r.perConn)}`)
    }
  }
  const range = (xs: number[]) => `${Math.min(...xs).toLocaleString('en-US')}–${Math.max(...xs).toLocaleString('en-US')}`
  const fields: (keyof Sample)[] = ['rss', 'rssAnon', 'heapUsed', 'external', 'arrayBuffers']
  console.log(`\n| variant (${N} idle connections, ${runs} interleaved runs) | ${fields.map((f) => `${f} B/conn`).join(' | ')} |`)
  console.log(`|---|${fields.map(() => '---').join('|')}|`)
  for (const name of names) {
    const rs = results.get(name)!
    console.log(`| ${name}: ${VARIANTS[name]!.about} | ${fields.map((f) => range(rs.map((r) => r[f]))).join(' | ')} |`)
  }
  for (const name of values.snapshot!.split(',').filter(Boolean)) {
    const r = await runOne(name, true)
    console.log(`\nheap growth per connection by constructor, ${name} (self sizes, snapshot after minus before, / ${r.held}):`)
    for (const t of r.top) console.log(`  ${t.bytes.toFixed(0).padStart(6)} B  ${t.count.toFixed(2).padStart(6)} ×  ${t.name}`)
  }
}

if (values.role === 'server') await server(values.variant!)
else if (values.role === 'client') await client(values.variant!)
else { await orchestrate(); process.exit(0) }
