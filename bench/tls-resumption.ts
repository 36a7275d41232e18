// A reconnect storm with and without TLS session resumption. A node:tls server built like the hub's
// MQTT listener (ECDSA certificate from local-pki, the connection gate, requestCert with any
// certificate taken) with the session-resumption options, beside one with the listener's options
// of today; a child process (so its CPU is not the server's) opens K connections 100 at a time,
// each writing a few bytes and reading the reply (so TLS 1.3 tickets have arrived), closes them,
// then reconnects all K, reusing each one's session (resumed) or not (full). The server's CPU
// (process.cpuUsage) and the wall time are taken over the reconnect phase only. Modes interleave.
// Usage: npx tsx bench/tls-resumption.ts [--k 2000 --runs 3 --modes a,b]
// Loopback only; every loop is bounded in count and time.
import { spawn } from 'node:child_process'
import { constants } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import type net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tls from 'node:tls'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { ConnectionGate } from '../src/tls/connection-gate.js'
import { ensureLocalPki, issueDeviceCertificate } from '../src/tls/local-pki.js'
import { SessionResumption } from '../src/tls/session-resumption.js'

interface Mode {
  about: string
  /** the listener with today's options instead of the resumption ones */
  today?: boolean
  resume: boolean
  tls12?: boolean
  /** the client takes no tickets: TLS 1.2 session ids */
  noTickets?: boolean
  clientCert?: boolean
}

const MODES: Record<string, Mode> = {
  'today-tls13-full': { about: "today's listener options, TLS 1.3, full", today: true, resume: false },
  'tls13-full': { about: 'TLS 1.3, full', resume: false },
  'tls13-resumed': { about: 'TLS 1.3, ticket', resume: true },
  'tls12-full': { about: 'TLS 1.2, full', resume: false, tls12: true },
  'tls12-resumed': { about: 'TLS 1.2, ticket', resume: true, tls12: true },
  'tls12-id-resumed': { about: 'TLS 1.2, session id (no tickets)', resume: true, tls12: true, noTickets: true },
  'tls13-cert-full': { about: 'TLS 1.3 + client certificate, full', resume: false, clientCert: true },
  'tls13-cert-resumed': { about: 'TLS 1.3 + client certificate, ticket', resume: true, clientCert: true },
}

const CONCURRENCY = 100
const DEADLINE_MS = 300_000
const CONNECT = Buffer.alloc(40, 0x10)
const CONNACK = Buffer.from([0x20, 0x02, 0x00, 0x00])
const SELF = fileURLToPath(import.meta.url)

const { values } = parseArgs({
  options: {
    role: { type: 'string', default: 'server' },
    k: { type: 'string', default: '2000' },
    runs: { type: 'string', default: '3' },
    modes: { type: 'string', default: Object.keys(MODES).join(',') },
    ports: { type: 'string', default: '' },
    pki: { type: 'string', default: '' },
  },
})
const K = Number(values.k)

function cpuMsOf(u: NodeJS.CpuUsage): number { return (u.user + u.system) / 1000 }

async function server(): Promise<void> {
  const names = values.modes!.split(',').filter(Boolean)
  for (const n of names) if (!MODES[n]) throw new Error(`no mode ${n}`)
  const dir = mkdtempSync(join(tmpdir(), 'tls-resumption-'))
  const pki = ensureLocalPki(dir, ['localhost', '127.0.0.1'])
  const key = readFileSync(pki.serverKeyFile, 'utf8')
  const cert = readFileSync(pki.serverCertFile, 'utf8')
  const resumption = SessionResumption.open(join(dir, 'tls'))
  let secured = 0, reused = 0
  const open = new Set<net.Socket>()
  const handle = (socket: tls.TLSSocket) => {
    secured++
    if (socket.isSessionReused()) reused++
    open.add(socket)
    socket.setNoDelay(true)
    socket.on('data', () => socket.write(CONNACK))
    socket.on('error', () => {})
    socket.on('close', () => open.delete(socket))
  }
  const build = (extra: tls.TlsOptions) => {
    const gate = new ConnectionGate({ handshakeTimeoutMs: 10_000, maxUnauthenticatedPerAddress: Infinity, maxConnectionsPerAddress: Infinity })
    return gate.createServer({ key, cert, requestCert: true, rejectUnauthorized: false, ...extra }, handle)
  }
  const today = build({})
  const withResumption = build(resumption.serverOptions('mqtt'))
  const mode = resumption.attach(withResumption)
  const listen = (s: tls.Server) => new Promise<number>((r) => s.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () => r((s.address() as net.AddressInfo).port)))
  const ports = `${await listen(today)},${await listen(withResumption)}`
  const child = spawn(process.execPath, ['--import', 'tsx', SELF, '--role', 'client', '--k', String(K), '--ports', ports, '--pki', dir], { stdio: ['pipe', 'pipe', 'inherit'] })
  const lines: string[] = []
  const waiters: ((l: string) => void)[] = []
  let buf = ''
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    buf += d
    let i
    while ((i = buf.indexOf('\n')) >= 0) {
      const l = buf.slice(0, i)
      buf = buf.slice(i + 1)
      const w = waiters.shift()
      if (w) w(l); else lines.push(l)
    }
  })
  const next = () => new Promise<string>((resolve, reject) => {
    const l = lines.shift()
    if (l !== undefined) return resolve(l)
    const t = setTimeout(() => reject(new Error('the client went quiet')), DEADLINE_MS)
    waiters.push((x) => { clearTimeout(t); resolve(x) })
  })
  const killTimer = setTimeout(() => { child.kill('SIGKILL'); process.exit(3) }, DEADLINE_MS * 3)
  killTimer.unref()
  console.log(`reconnect storm: ${K} connections, ${CONCURRENCY} at a time; ticket keys: ${mode}; node ${process.version}, OpenSSL ${process.versions.openssl}`)
  const rows = new Map<string, { rate: number; cpuMs: number; reusedPct: number; clientCpuMs: number }[]>()
  const runs = Number(values.runs)
  for (let run = 1; run <= runs; run++) {
    const order = run % 2 === 0 ? [...names].reverse() : names
    for (const name of order) {
      child.stdin!.write(`${name}\n`)
      if ((await next()) !== 'closed') throw new Error('client failed its first round')
      await new Promise((r) => setTimeout(r, 200)) // closes settle before the measured phase
      secured = 0; reused = 0
      const cpu0 = process.cpuUsage()
      child.stdin!.write('reconnect\n')
      const [word, ms, clientCpu] = (await next()).split(' ')
      if (word !== 'reconnected') throw new Error(`client: ${word}`)
      const cpu = cpuMsOf(process.cpuUsage(cpu0))
      const r = { rate: K / (Number(ms) / 1000), cpuMs: cpu / secured, reusedPct: (100 * reused) / secured, clientCpuMs: Number(clientCpu) / K }
      ;(rows.get(name) ?? rows.set(name, []).get(name)!).push(r)
      console.log(`run ${run} ${name}: ${secured} handshakes, ${r.rate.toFixed(0)}/s, server ${r.cpuMs.toFixed(3)} ms CPU each, client ${r.clientCpuMs.toFixed(3)} ms, ${r.reusedPct.toFixed(1)} % resumed`)
      if ((await next()) !== 'idle') throw new Error('client did not close')
    }
  }
  const range = (xs: number[], d: number) => `${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)}`
  console.log(`\n| mode (${K} reconnects, ${CONCURRENCY} at a time, ${runs} interleaved runs) | handshakes/s | server CPU ms/handshake | client CPU ms/handshake | resumed % |`)
  console.log('|---|---|---|---|---|')
  for (const name of names) {
    const rs = rows.get(name)!
    console.log(`| ${name}: ${MODES[name]!.about} | ${range(rs.map((r) => r.rate), 0)} | ${range(rs.map((r) => r.cpuMs), 3)} | ${range(rs.map((r) => r.clientCpuMs), 3)} | ${range(rs.map((r) => r.reusedPct), 1)} |`)
  }
  child.stdin!.end()
  await new Promise((r) => child.once('exit', r))
  for (const s of open) s.destroy()
  resumption.close()
  today.close()
  withResumption.close()
  rmSync(dir, { recursive: true, force: true })
}

async function client(): Promise<void> {
  setTimeout(() => process.exit(2), DEADLINE_MS * 3).unref()
  const [todayPort, resumptionPort] = values.ports!.split(',').map(Number)
  const ca = readFileSync(join(values.pki!, 'ca.pem'))
  const device = issueDeviceCertificate('device-1')
  const connectOnce = (m: Mode, session: Buffer | undefined) => new Promise<{ socket: tls.TLSSocket; session: Buffer | undefined }>((resolve, reject) => {
    let got: Buffer | undefined
    const socket = tls.connect({
      host: '127.0.0.1', port: m.today ? todayPort! : resumptionPort!, ca, servername: 'localhost',
      ...(m.tls12 ? { maxVersion: 'TLSv1.2' as const } : {}),
      ...(m.noTickets ? { secureOptions: constants.SSL_OP_NO_TICKET } : {}),
      ...(m.clientCert ? { key: device.keyPem, cert: device.certPem } : {}),
      ...(session ? { session } : {}),
    }, () => socket.write(CONNECT))
    const timer = setTimeout(() => { socket.destroy(); reject(new Error('connect timed out')) }, 30_000)
    socket.on('session', (s: Buffer) => { got = s })
    socket.once('data', () => { clearTimeout(timer); resolve({ socket, session: got }) })
    socket.on('error', (e) => { clearTimeout(timer); reject(e) })
  })
  const closeAll = (sockets: tls.TLSSocket[]) => Promise.all(sockets.map((s) => new Promise<void>((r) => { s.once('close', () => r()); s.destroy() })))
  const round = async (m: Mode, sessions: (Buffer | undefined)[]) => {
    const out: { socket: tls.TLSSocket; session: Buffer | undefined }[] = new Array(K)
    let next = 0
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (next < K) { const i = next++; out[i] = await connectOnce(m, sessions[i]) }
    }))
    return out
  }
  const input = process.stdin.setEncoding('utf8')
  let pending = ''
  const commands: string[] = []
  let wake: (() => void) | undefined
  input.on('data', (d: string) => {
    pending += d
    let i
    while ((i = pending.indexOf('\n')) >= 0) { commands.push(pending.slice(0, i)); pending = pending.slice(i + 1) }
    wake?.()
  })
  input.on('end', () => process.exit(0))
  const command = async () => {
    while (commands.length === 0) await new Promise<void>((r) => { wake = r })
    return commands.shift()!
  }
  for (let i = 0; i < 1000; i++) {
    const m = MODES[await command()]
    if (!m) { process.stdout.write('error unknown-mode\n'); continue }
    const first = await round(m, [])
    const sessions = first.map((c) => (m.resume ? c.session : undefined))
    await closeAll(first.map((c) => c.socket))
    process.stdout.write('closed\n')
    await command() // reconnect
    const t0 = performance.now()
    const cpu0 = process.cpuUsage()
    const second = await round(m, sessions)
    const ms = performance.now() - t0
    process.stdout.write(`reconnected ${ms.toFixed(1)} ${cpuMsOf(process.cpuUsage(cpu0)).toFixed(1)}\n`)
    await closeAll(second.map((c) => c.socket))
    process.stdout.write('idle\n')
  }
}

if (values.role === 'client') await client()
else { await server(); process.exit(0) }
