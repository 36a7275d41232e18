// The embedded blob store, child process vs in-process: Azurite's start-up time, its memory idle and
// after a 64 MB upload, and what a 64 MB upload does to the event loop of the process hosting it.
// Each run uses a fresh data dir; the uploader is a separate process (so its own work is not counted
// against the host's event loop), over HTTPS on 127.0.0.1, with @azure/storage-blob (one Put Blob).
// Usage: npx tsx bench/azurite-startup.ts [--runs 3]    (loopback only; every step is bounded)
import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import { readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { AzuriteProcess } from '../src/storage/azurite-process.js'
import { ensurePrivateDir, loadOrCreateAccountKey } from '../src/storage/blob-store-identity.js'
import { pickFreeLoopbackPort } from '../src/storage/loopback-port.js'
import { formatStorageConnectionString } from '../src/storage/storage-connection-string.js'
import { ensureLocalPki } from '../src/tls/local-pki.js'
import { createLogger } from '../src/log.js'
import { tempDir } from '../test/helpers/test-hub.js'
import { cpuMs } from './load/proc-stats.js'

const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' }, inproc: { type: 'string' } } })
const MB = 1024 * 1024

function rssMb(pid: number | 'self'): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+) kB`).exec(status)![1])
  return { rss: Math.round(kb('VmRSS') / 1024), hwm: Math.round(kb('VmHWM') / 1024) }
}

/** CPU ms of one thread (the main thread's tid is the pid): 10 ms resolution. */
function threadCpuMs(pid: number, tid: number): number {
  const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(f[11]) + Number(f[12])) * 10
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

// 64 MB of random bytes, one Put Blob (below the SDK's 256 MB single-shot limit), then read back and compared
const UPLOADER = `
import { BlobServiceClient } from '@azure/storage-blob'
import { randomBytes } from 'node:crypto'
const data = randomBytes(${64 * MB})
const c = BlobServiceClient.fromConnectionString(process.env.CS).getContainerClient('bench')
await c.createIfNotExists()
console.log('go')
await new Promise((r) => process.stdin.once('data', r))
let t = performance.now()
await c.getBlockBlobClient('64mb').uploadData(data)
console.log('uploaded ' + (performance.now() - t).toFixed(0))
t = performance.now()
const back = await c.getBlobClient('64mb').downloadToBuffer()
console.log('downloaded ' + (performance.now() - t).toFixed(0) + ' ' + back.equals(data))`

interface LoopStats { maxMs: number; p99Ms: number; meanMs: number }
interface UploadResult {
  uploadMs: number; downloadMs: number; equal: boolean; duringUpload: LoopStats; duringDownload: LoopStats
  /** CPU of the host's main thread, and of the whole server process, over upload + download */
  hostMainThreadCpuMs: number; serverCpuMs: number
}

/** Runs the uploader against `cs` while this process's event loop delay is recorded. */
async function upload(cs: string, caFile: string, serverPid: number): Promise<UploadResult> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', UPLOADER], {
    cwd: process.cwd(), env: { ...process.env, CS: cs, NODE_EXTRA_CA_CERTS: caFile }, stdio: ['pipe', 'pipe', 'inherit'],
  })
  const lines: string[] = []
  let wake: (() => void) | undefined
  let buf = ''
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString()
    let i
    while ((i = buf.indexOf('\n')) >= 0) { lines.push(buf.slice(0, i)); buf = buf.slice(i + 1); wake?.() }
  })
  const next = async (prefix: string): Promise<string> => {
    const deadline = Date.now() + 120_000
    for (;;) {
      const at = lines.findIndex((l) => l.startsWith(prefix))
      if (at >= 0) return lines.splice(at, 1)[0]!
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`uploader: no '${prefix}' line (exit ${child.exitCode})`)
      await new Promise<void>((r) => { wake = r; setTimeout(r, 200) })
    }
  }
  await next('go')
  const stats = (h: ReturnType<typeof monitorEventLoopDelay>): LoopStats => ({
    maxMs: +(h.max / 1e6).toFixed(1), p99Ms: +(h.percentile(99) / 1e6).toFixed(1), meanMs: +(h.mean / 1e6).toFixed(2),
  })
  const main0 = threadCpuMs(process.pid, process.pid)
  const server0 = cpuMs(serverPid)
  let h = monitorEventLoopDelay({ resolution: 1 })
  h.enable()
  child.stdin!.write('x\n')
  const uploaded = await next('uploaded')
  h.disable()
  const duringUpload = stats(h)
  h = monitorEventLoopDelay({ resolution: 1 })
  h.enable()
  const downloaded = await next('downloaded')
  h.disable()
  const hostMainThreadCpuMs = threadCpuMs(process.pid, process.pid) - main0
  const serverCpuMs = cpuMs(serverPid) - server0
  child.stdin!.end()
  const [, dMs, eq] = downloaded.split(' ')
  return {
    uploadMs: Number(uploaded.split(' ')[1]), downloadMs: Number(dMs), equal: eq === 'true', duringUpload, duringDownload: stats(h),
    hostMainThreadCpuMs, serverCpuMs,
  }
}

async function childRun(run: number): Promise<Record<string, unknown>> {
  const dataDir = tempDir('hyperhub-azurite-bench-')
  try {
    const pki = ensureLocalPki(join(dataDir, 'tls'), ['localhost', '127.0.0.1'])
    const opts = { dataDir, port: 0, certFile: pki.serverCertFile, keyFile: pki.serverKeyFile, log: createLogger('silent') }
    let store = new AzuriteProcess(opts)
    let t = performance.now()
    const ep = await store.start()
    const readyMs = Math.round(performance.now() - t)
    await sleep(1000)
    const idle = rssMb(store.pid!)
    const hostIdle = rssMb('self')
    const up = await upload(ep.connectionString, pki.caCertFile, store.pid!)
    const after = rssMb(store.pid!)
    t = performance.now()
    await store.stop()
    const stopMs = Math.round(performance.now() - t)
    store = new AzuriteProcess(opts)
    t = performance.now()
    await store.start()
    const restartReadyMs = Math.round(performance.now() - t)
    await store.stop()
    return { mode: 'child', run, readyMs, restartReadyMs, stopMs, childRssIdleMb: idle.rss, childRssAfter64MbMb: after.rss, childPeakRssMb: after.hwm, hostRssMb: hostIdle.rss, ...up }
  } finally {
    rmSync(dataDir, { recursive: true, force: true })
  }
}

// In a fresh process (cold module cache): Azurite's BlobServer used as a library, as the hub would.
async function inProcess(dataDir: string): Promise<void> {
  const pki = ensureLocalPki(join(dataDir, 'tls'), ['localhost', '127.0.0.1'])
  const dir = join(dataDir, 'blobs')
  ensurePrivateDir(dir)
  const key = loadOrCreateAccountKey(dir)
  const port = await pickFreeLoopbackPort()
  const before = rssMb('self')
  let t = performance.now()
  // its accounts can only come from process.env, which every later child of the hub would inherit
  process.env.AZURITE_ACCOUNTS = `hyperhub:${key}`
  const require = createRequire(import.meta.url)
  const BlobConfiguration = require('azurite/dist/src/blob/BlobConfiguration').default
  const BlobServer = require('azurite/dist/src/blob/BlobServer').default
  const requireMs = Math.round(performance.now() - t)
  const afterRequire = rssMb('self')
  t = performance.now()
  const config = new BlobConfiguration('127.0.0.1', port, 5, join(dir, '__azurite_db_blob__.json'), join(dir, '__azurite_db_blob_extent__.json'),
    [{ locationId: 'Default', locationPath: join(dir, '__blobstorage__'), maxConcurrency: 50 }],
    false, undefined, false, undefined, true, true, pki.serverCertFile, pki.serverKeyFile, '', undefined, true, false)
  const server = new BlobServer(config)
  await server.start()
  const startMs = Math.round(performance.now() - t)
  await sleep(1000)
  const idle = rssMb('self')
  const cs = formatStorageConnectionString({ accountName: 'hyperhub', accountKey: key, blobEndpoint: `https://127.0.0.1:${port}/hyperhub` })
  const up = await upload(cs, pki.caCertFile, process.pid)
  const after = rssMb('self')
  await server.close()
  console.log(JSON.stringify({ requireMs, startMs, hostRssBeforeMb: before.rss, hostRssAfterRequireMb: afterRequire.rss, hostRssIdleMb: idle.rss, hostRssAfter64MbMb: after.rss, hostPeakRssMb: after.hwm, ...up }))
}

async function inProcessRun(run: number): Promise<Record<string, unknown>> {
  const dataDir = tempDir('hyperhub-azurite-bench-')
  try {
    const t = performance.now()
    const child = spawn(process.execPath, ['--import', 'tsx', new URL(import.meta.url).pathname, '--inproc', dataDir], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout!.on('data', (d: Buffer) => { out += d.toString() })
    const code = await new Promise((resolve) => child.once('exit', resolve))
    if (code !== 0) throw new Error(`in-process run exited with ${code}: ${out}`)
    return { mode: 'in-process', run, processMs: Math.round(performance.now() - t), ...JSON.parse(out.trim().split('\n').pop()!) }
  } finally {
    rmSync(dataDir, { recursive: true, force: true })
  }
}

if (values.inproc) {
  await inProcess(values.inproc)
  process.exit(0) // keep-alive sockets of the SDK's agent are not ours to wait for
} else {
  const rows: Record<string, unknown>[] = []
  for (let run = 1; run <= Number(values.runs); run++) {
    for (const row of [await childRun(run), await inProcessRun(run)]) { // interleaved: the machine is noisy
      rows.push(row)
      console.log(JSON.stringify(row))
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
  const pick = (mode: string, f: (r: any) => number) => rows.filter((r) => r.mode === mode).map(f)
  const summary = {
    childReadyMs: pick('child', (r) => r.readyMs), childRestartReadyMs: pick('child', (r) => r.restartReadyMs),
    childRssIdleMb: pick('child', (r) => r.childRssIdleMb), childRssAfter64MbMb: pick('child', (r) => r.childRssAfter64MbMb), childPeakRssMb: pick('child', (r) => r.childPeakRssMb),
    childHostLoopMaxMsUpload: pick('child', (r) => r.duringUpload.maxMs), inprocLoopMaxMsUpload: pick('in-process', (r) => r.duringUpload.maxMs),
    childHostLoopP99MsUpload: pick('child', (r) => r.duringUpload.p99Ms), inprocLoopP99MsUpload: pick('in-process', (r) => r.duringUpload.p99Ms),
    childHostLoopMaxMsDownload: pick('child', (r) => r.duringDownload.maxMs), inprocLoopMaxMsDownload: pick('in-process', (r) => r.duringDownload.maxMs),
    inprocRequireMs: pick('in-process', (r) => r.requireMs), inprocStartMs: pick('in-process', (r) => r.startMs),
    inprocRssAddedByRequireMb: pick('in-process', (r) => r.hostRssAfterRequireMb - r.hostRssBeforeMb),
    inprocRssAddedIdleMb: pick('in-process', (r) => r.hostRssIdleMb - r.hostRssBeforeMb),
    inprocRssAddedAfter64MbMb: pick('in-process', (r) => r.hostRssAfter64MbMb - r.hostRssBeforeMb),
    childHostMainThreadCpuMs: pick('child', (r) => r.hostMainThreadCpuMs), childServerCpuMs: pick('child', (r) => r.serverCpuMs),
    inprocHostMainThreadCpuMs: pick('in-process', (r) => r.hostMainThreadCpuMs), inprocServerCpuMs: pick('in-process', (r) => r.serverCpuMs),
    uploadMsChild: pick('child', (r) => r.uploadMs), uploadMsInproc: pick('in-process', (r) => r.uploadMs),
    allEqual: rows.every((r) => r.equal === true),
  }
  console.log('summary (per run, then median):')
  for (const [k, v] of Object.entries(summary)) console.log(`  ${k}: ${JSON.stringify(v)}${Array.isArray(v) ? `  median ${median(v)}` : ''}`)
}
