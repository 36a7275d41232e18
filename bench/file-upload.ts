// File upload throughput: 1 MB files from 8 devices at once and 64 MB files from 2 at once, each
// upload as azure-iot-device's `client.uploadToBlob(name, stream, length)` does it (SAS request to the
// hub, the file straight into the hub's embedded Azurite, completion report to the hub), against the
// real hub process. MB/s over the wall time (first SAS request to last notification 204), per-file
// latency, and CPU time per MB of the hub and of its Azurite child separately; 1 MB and 64 MB runs
// interleaved, one file of each run downloaded and compared by sha256.
//
// The data path of the main runs is the SDK's own, without the SDK's fixed port: the SAS request and
// the completion report go to the hub's ephemeral HTTPS port with the SDK's paths, headers and body,
// over a keep-alive agent as Node 20's https.globalAgent (what the SDK's Http transport uses), and the
// file goes through the very @azure/storage-blob (12.8.0, the copy nested in azure-iot-device) with the
// SDK's pipeline (anonymous credential, 4 tries, keep-alive off) and call (uploadStream, 4 MB buffers,
// concurrency 20). A second phase runs the SDK itself (`uploadToBlob`, Http transport) beside the same
// replica on a hub listening on 443, the port the SDK dials; it waits (bounded) while 443 is taken.
//
// Usage: npx tsx bench/file-upload.ts [--runs 3 --small-files 32 --large-files 4 --sdk true]
// Loopback only; every loop is bounded in count and time. Writes bench/results/<time>-file-upload.{json,txt}.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import https from 'node:https'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { parseArgs } from 'node:util'
import { createSasToken } from '../src/auth/sas-token.js'
import { spawnHub, type HubProcess } from '../test/helpers/hub-process.js'
import { seedPki, tempDir } from '../test/helpers/test-hub.js'
import { deviceIds, provisionDevices } from './load/provision.js'
import { cpuMs, machineMs, rssKb } from './load/proc-stats.js'

const { values } = parseArgs({
  options: {
    client: { type: 'boolean', default: false },
    runs: { type: 'string', default: '3' },
    'small-devices': { type: 'string', default: '8' },
    'small-files': { type: 'string', default: '32' }, // per device
    'large-devices': { type: 'string', default: '2' },
    'large-files': { type: 'string', default: '4' }, // per device
    sdk: { type: 'string', default: 'true' },
    'port-wait-s': { type: 'string', default: '180' },
    write: { type: 'string', default: 'true' }, // false: no files in bench/results (e.g. for a profile)
  },
})

const MB = 1024 * 1024
const CHUNK = 64 * 1024 // what fs.createReadStream hands over
const KEY = Buffer.from('hyperhub-bench-shared-device-key').toString('base64')
const API = 'api-version=2021-04-12' // azure-iot-common's endpoint.apiVersion
const RUN_DEADLINE_MS = 90_000 // no file starts after this, per run
const FILE_TIMEOUT_MS = 120_000 // one upload, SAS to 204
const IPC_TIMEOUT_MS = 150_000
const IDLE_MS = 5000

type Mode = 'replica' | 'sdk'
interface Job { tag: string; mode: Mode; size: number; devices: string[]; files: number; port: number }
interface FileResult { device: number; k: number; ms: number; ok: boolean; error?: string }
interface JobResult { wallMs: number; files: FileResult[]; bytes: number }

// ---------------------------------------------------------------------------------------------
// The client process: NODE_EXTRA_CA_CERTS set at its start, as the SDK needs; driven over IPC.
// ---------------------------------------------------------------------------------------------
async function clientMain(): Promise<void> {
  const require = createRequire(import.meta.url)
  // the modules exactly as the SDK's blob_uploader.js resolves them
  const sdkRequire = createRequire(require.resolve('azure-iot-device/dist/blob_upload/blob_uploader.js'))
  const sdkStorage = sdkRequire('@azure/storage-blob')
  const { AbortController } = sdkRequire('@azure/abort-controller')
  const { Client } = require('azure-iot-device')
  const { Http } = require('azure-iot-device-http')
  const { BlobServiceClient } = await import('@azure/storage-blob')
  const agent = new https.Agent({ keepAlive: true }) // as https.globalAgent on Node 20
  const bases = new Map<number, Buffer>()
  const base = (size: number) => { let b = bases.get(size); if (!b) bases.set(size, (b = randomBytes(size))); return b }
  /** The file's first chunk carries its name, so every file differs; the rest is the size's random base. */
  const head = (tag: string, size: number, device: number, k: number) => {
    const h = Buffer.from(base(size).subarray(0, CHUNK))
    h.write(`${tag}/d${device}/f${k}`.padEnd(64, '.'), 0, 'latin1')
    return h
  }
  const fileStream = (tag: string, size: number, device: number, k: number) => {
    const b = base(size)
    const chunks: Buffer[] = [head(tag, size, device, k)]
    for (let o = CHUNK; o < size; o += CHUNK) chunks.push(b.subarray(o, Math.min(size, o + CHUNK)))
    return Readable.from(chunks)
  }
  const blobName = (tag: string, k: number) => `bench/${tag}/file-${k}.bin`

  const post = (port: number, path: string, token: string, body: unknown) => new Promise<{ status: number; text: string }>((resolve, reject) => {
    const payload = JSON.stringify(body)
    const req = https.request({
      host: '127.0.0.1', port, servername: 'localhost', agent, method: 'POST', path,
      headers: { Host: 'localhost', Authorization: token, Accept: 'application/json', 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload), 'User-Agent': 'azure-iot-device/1.18.4' },
    }, (res) => {
      let text = ''
      res.on('data', (d: Buffer) => { text += d.toString() })
      res.on('end', () => resolve({ status: res.statusCode!, text }))
    })
    req.setTimeout(30_000, () => req.destroy(new Error('request timed out')))
    req.on('error', reject)
    req.end(payload)
  })

  /** What BlobUploadClient.uploadToBlob does: SAS, BlobUploader.uploadToBlob, notifyUploadComplete. */
  async function replicaUpload(port: number, deviceId: string, name: string, stream: Readable, length: number): Promise<void> {
    const token = createSasToken(encodeURIComponent(`localhost/devices/${deviceId}`), KEY, undefined, 3600)
    const dev = `/devices/${encodeURIComponent(deviceId)}`
    const sas = await post(port, `${dev}/files?${API}`, token, { blobName: name })
    if (sas.status !== 200) throw new Error(`SAS request: ${sas.status} ${sas.text.slice(0, 200)}`)
    const info = JSON.parse(sas.text) as { correlationId: string; hostName: string; containerName: string; blobName: string; sasToken: string }
    const pipeline = sdkStorage.newPipeline(new sdkStorage.AnonymousCredential(), {
      retryOptions: { maxTries: 4 }, telemetry: { value: 'Upload To Blob via Node.js IoT Client' }, keepAliveOptions: { enable: false },
    })
    const blob = new sdkStorage.BlockBlobClient(`https://${info.hostName}/${info.containerName}/${info.blobName}${info.sasToken}`, pipeline)
    let result: { isSuccess: boolean; statusCode: number; statusDescription: unknown }
    try {
      const r = await blob.uploadStream(stream, 4 * MB, 20, { abortSignal: AbortController.timeout(FILE_TIMEOUT_MS) })
      const status = r._response.status as number
      result = { isSuccess: status >= 200 && status < 300, statusCode: status, statusDescription: r._response.bodyAsText }
    } catch (e) {
      const statusCode = (e as { statusCode?: number }).statusCode ?? -1
      result = { isSuccess: false, statusCode, statusDescription: `Failed to upload to blob${statusCode === -1 ? '' : `. Status code: ${statusCode}`}` }
    }
    void length // the SDK only checks it is truthy
    const done = await post(port, `${dev}/files/notifications/${encodeURIComponent(info.correlationId)}?${API}`, token, result)
    if (done.status !== 204) throw new Error(`notification: ${done.status} ${done.text.slice(0, 200)}`)
    if (!result.isSuccess) throw new Error(`blob upload failed: ${result.statusCode} ${String(result.statusDescription)}`)
  }

  async function run(job: Job): Promise<JobResult> {
    const clients = job.mode === 'sdk'
      ? job.devices.map((id) => Client.fromConnectionString(`HostName=localhost;DeviceId=${id};SharedAccessKey=${KEY}`, Http))
      : []
    const files: FileResult[] = []
    const t0 = performance.now()
    const deadline = t0 + RUN_DEADLINE_MS
    let last = t0
    await Promise.all(job.devices.map(async (id, d) => {
      for (let k = 0; k < job.files && performance.now() < deadline; k++) {
        const stream = fileStream(job.tag, job.size, d, k)
        const start = performance.now()
        let timer: NodeJS.Timeout | undefined
        try {
          const upload = job.mode === 'sdk'
            ? (clients[d].uploadToBlob(blobName(job.tag, k), stream, job.size) as Promise<void>)
            : replicaUpload(job.port, id, blobName(job.tag, k), stream, job.size)
          await Promise.race([upload, new Promise((_, reject) => { timer = setTimeout(() => reject(new Error('file timed out')), FILE_TIMEOUT_MS) })])
          files.push({ device: d, k, ms: performance.now() - start, ok: true })
        } catch (e) {
          const err = e as Error & { innerError?: Error }
          files.push({ device: d, k, ms: performance.now() - start, ok: false, error: `${err.message}${err.innerError ? ` (${err.innerError.message})` : ''}` })
        } finally {
          clearTimeout(timer)
        }
        last = Math.max(last, performance.now())
      }
    }))
    const wallMs = last - t0
    await Promise.all(clients.map((c: { close(): Promise<unknown> }) => c.close().catch(() => {})))
    return { wallMs, files, bytes: files.filter((f) => f.ok).length * job.size }
  }

  async function verify(v: { cs: string; container: string; tag: string; size: number; deviceId: string; device: number; k: number }) {
    const b = base(v.size)
    const expected = createHash('sha256').update(head(v.tag, v.size, v.device, v.k)).update(b.subarray(CHUNK)).digest('hex')
    const got = await BlobServiceClient.fromConnectionString(v.cs).getContainerClient(v.container).getBlobClient(`${v.deviceId}/${blobName(v.tag, v.k)}`).downloadToBuffer()
    const sha = createHash('sha256').update(got).digest('hex')
    return { ok: sha === expected && got.length === v.size, size: got.length, sha: sha.slice(0, 16) }
  }

  process.on('message', (m: { cmd: string; job?: Job; verify?: Parameters<typeof verify>[0] }) => {
    void (async () => {
      try {
        if (m.cmd === 'prepare') { base(m.job!.size); process.send!({ ev: 'ready' }) }
        else if (m.cmd === 'run') process.send!({ ev: 'done', result: await run(m.job!) })
        else if (m.cmd === 'verify') process.send!({ ev: 'verified', result: await verify(m.verify!) })
        else if (m.cmd === 'exit') process.exit(0)
      } catch (e) {
        process.send!({ ev: 'error', message: (e as Error).stack ?? String(e) })
      }
    })()
  })
  process.send!({ ev: 'up' })
}

// ---------------------------------------------------------------------------------------------
// The orchestrator: hubs, CPU from /proc, interleaved runs, the report.
// ---------------------------------------------------------------------------------------------
const lines: string[] = []
const log = (s: string) => { console.log(s); lines.push(s) }
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

class Worker {
  private waiters: { ev: string; resolve: (m: any) => void; reject: (e: Error) => void }[] = []
  readonly child: ChildProcess
  constructor(caFile: string) {
    this.child = spawn(process.execPath, ['--import', 'tsx', 'bench/file-upload.ts', '--client'], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, NODE_EXTRA_CA_CERTS: caFile },
    })
    this.child.on('message', (m: { ev: string; message?: string }) => {
      const w = this.waiters.shift()
      if (!w) return
      if (m.ev === 'error') w.reject(new Error(`client: ${m.message}`))
      else if (m.ev !== w.ev) w.reject(new Error(`client said ${m.ev}, expected ${w.ev}`))
      else w.resolve(m)
    })
    this.child.once('exit', (code) => { for (const w of this.waiters.splice(0)) w.reject(new Error(`client exited ${code}`)) })
  }
  next<T = any>(ev: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`client: no '${ev}' in ${IPC_TIMEOUT_MS} ms`)), IPC_TIMEOUT_MS)
      this.waiters.push({ ev, resolve: (m) => { clearTimeout(timer); resolve(m) }, reject: (e) => { clearTimeout(timer); reject(e) } })
    })
  }
  send(m: unknown): void { this.child.send(m as any) }
}

function azuritePid(hubPid: number): number | undefined {
  try {
    const out = execFileSync('ps', ['--ppid', String(hubPid), '-o', 'pid=,args='], { encoding: 'utf8' })
    const line = out.split('\n').find((l) => /azurite/i.test(l))
    return line ? Number(line.trim().split(/\s+/)[0]) : undefined
  } catch {
    return undefined
  }
}

interface Hub { hub: HubProcess; dataDir: string; azPid: number; cs: string; ids: string[]; idleHubMsPerS: number; idleAzMsPerS: number }

async function startHub(label: string, extraArgs: string[], deviceCount: number): Promise<Hub> {
  const dataDir = tempDir('hyperhub-file-upload-bench-')
  seedPki(dataDir)
  const hub = await spawnHub(dataDir, ['--blob-store-start', 'boot', ...extraArgs])
  const cs = /(DefaultEndpointsProtocol=https;\S+)/.exec(hub.output())?.[1]
  if (!cs) throw new Error(`${label}: no blob store connection string in the banner:\n${hub.output()}`)
  let azPid: number | undefined
  for (let i = 0; i < 100 && !azPid; i++) { azPid = azuritePid(hub.child.pid!); if (!azPid) await sleep(100) }
  if (!azPid) throw new Error(`${label}: no Azurite child of hub ${hub.child.pid}`)
  const ids = deviceIds(deviceCount, 'fu-')
  await provisionDevices({ httpsPort: hub.ports.https, ownerKey: hub.ownerKey, ids, deviceKey: KEY })
  log(`${label}: hub pid ${hub.child.pid} (HTTPS port ${hub.ports.https}), Azurite pid ${azPid}, ${ids.length} devices`)
  // the hub's and Azurite's CPU while nothing happens, as a floor for the per-file figures
  const i0 = { hub: cpuMs(hub.child.pid!), az: cpuMs(azPid) }
  await sleep(IDLE_MS)
  const idleHubMsPerS = (cpuMs(hub.child.pid!) - i0.hub) / (IDLE_MS / 1000)
  const idleAzMsPerS = (cpuMs(azPid) - i0.az) / (IDLE_MS / 1000)
  log(`  idle ${IDLE_MS / 1000} s: hub ${idleHubMsPerS.toFixed(1)} ms CPU/s, Azurite ${idleAzMsPerS.toFixed(1)} ms CPU/s; RSS hub ${(rssKb(hub.child.pid!) / 1024).toFixed(0)} MB, Azurite ${(rssKb(azPid) / 1024).toFixed(0)} MB`)
  return { hub, dataDir, azPid, cs, ids, idleHubMsPerS, idleAzMsPerS }
}

async function stopHub(h: Hub): Promise<void> {
  h.hub.child.kill('SIGTERM')
  await Promise.race([h.hub.exited, sleep(20_000)])
  for (let i = 0; i < 50 && existsPid(h.azPid); i++) await sleep(100)
  if (existsPid(h.azPid)) log(`warning: Azurite pid ${h.azPid} still there 5 s after its hub stopped`)
  rmSync(h.dataDir, { recursive: true, force: true })
}

function existsPid(pid: number): boolean {
  try { readFileSync(`/proc/${pid}/stat`); return true } catch { return false }
}

interface Row {
  phase: string; run: number; mode: Mode; sizeMB: number; devices: number; filesPerDevice: number
  okFiles: number; failed: number; errors: string[]; mbps: number; wallS: number
  p50: number; p95: number; max: number
  hubCpuMs: number; azCpuMs: number; clientCpuMs: number; hubMsPerMB: number; azMsPerMB: number; clientMsPerMB: number; hubMsPerFile: number
  /** the hub's CPU less its idle rate over the same wall time, per file */
  hubNetMsPerFile: number
  /** busy share of the machine over the run, % of all cores, and the part of it not hub, Azurite or client */
  machinePct: number
  othersPct: number
  hubRssMB: number; azRssMB: number; verified: { ok: boolean; size: number; sha: string }
}

const pct = (xs: number[], p: number) => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]! : NaN }

async function runOnce(w: Worker, h: Hub, phase: string, run: number, mode: Mode, size: number, devices: number, files: number): Promise<Row> {
  const tag = `${phase}-${run}-${mode}-${size / MB}mb`
  const job: Job = { tag, mode, size, devices: h.ids.slice(0, devices), files, port: h.hub.ports.https }
  w.send({ cmd: 'prepare', job }); await w.next('ready')
  const hubPid = h.hub.child.pid!
  const cpu0 = { hub: cpuMs(hubPid), az: cpuMs(h.azPid), client: cpuMs(w.child.pid!), machine: machineMs() }
  w.send({ cmd: 'run', job })
  const { result } = await w.next<{ result: JobResult }>('done')
  const cpu1 = { hub: cpuMs(hubPid), az: cpuMs(h.azPid), client: cpuMs(w.child.pid!), machine: machineMs() }
  if (!existsPid(h.azPid)) throw new Error(`Azurite pid ${h.azPid} is gone (restarted?)`)
  const ok = result.files.filter((f) => f.ok)
  const mbTotal = result.bytes / MB
  const pick = ok[ok.length - 1]
  const verified = pick
    ? (w.send({ cmd: 'verify', verify: { cs: h.cs, container: 'fileupload', tag, size, deviceId: job.devices[pick.device]!, device: pick.device, k: pick.k } }),
      (await w.next<{ result: Row['verified'] }>('verified')).result)
    : { ok: false, size: 0, sha: '' }
  const lat = ok.map((f) => f.ms)
  const row: Row = {
    phase, run, mode, sizeMB: size / MB, devices, filesPerDevice: files, okFiles: ok.length, failed: result.files.length - ok.length,
    errors: [...new Set(result.files.filter((f) => !f.ok).map((f) => f.error!))].slice(0, 5),
    mbps: mbTotal / (result.wallMs / 1000), wallS: result.wallMs / 1000, p50: pct(lat, 50), p95: pct(lat, 95), max: Math.max(...lat),
    hubCpuMs: cpu1.hub - cpu0.hub, azCpuMs: cpu1.az - cpu0.az, clientCpuMs: cpu1.client - cpu0.client,
    hubMsPerMB: (cpu1.hub - cpu0.hub) / mbTotal, azMsPerMB: (cpu1.az - cpu0.az) / mbTotal, clientMsPerMB: (cpu1.client - cpu0.client) / mbTotal,
    hubMsPerFile: (cpu1.hub - cpu0.hub) / ok.length,
    hubNetMsPerFile: (cpu1.hub - cpu0.hub - h.idleHubMsPerS * (result.wallMs / 1000)) / ok.length,
    machinePct: (100 * (cpu1.machine.busy - cpu0.machine.busy)) / (cpu1.machine.total - cpu0.machine.total),
    othersPct: (100 * (cpu1.machine.busy - cpu0.machine.busy - (cpu1.hub - cpu0.hub) - (cpu1.az - cpu0.az) - (cpu1.client - cpu0.client))) / (cpu1.machine.total - cpu0.machine.total),
    hubRssMB: rssKb(hubPid) / 1024, azRssMB: rssKb(h.azPid) / 1024, verified,
  }
  log(`${phase} run ${run} ${mode} ${row.sizeMB} MB × ${devices} dev × ${files}: ${row.okFiles} ok, ${row.failed} failed, ${row.mbps.toFixed(1)} MB/s in ${row.wallS.toFixed(2)} s, `
    + `p50 ${row.p50.toFixed(0)} ms p95 ${row.p95.toFixed(0)} ms max ${row.max.toFixed(0)} ms; CPU ms/MB hub ${row.hubMsPerMB.toFixed(2)} Azurite ${row.azMsPerMB.toFixed(1)} client ${row.clientMsPerMB.toFixed(1)}; `
    + `hub ${row.hubMsPerFile.toFixed(2)} ms/file (${row.hubNetMsPerFile.toFixed(2)} above idle); machine ${row.machinePct.toFixed(0)} % busy (others ${row.othersPct.toFixed(0)} %); RSS hub ${row.hubRssMB.toFixed(0)} MB Azurite ${row.azRssMB.toFixed(0)} MB; sha256 ${verified.ok ? 'match' : 'MISMATCH'} (${verified.sha}, ${verified.size} B)`)
  for (const e of row.errors) log(`  error: ${e}`)
  return row
}

function port443Holder(): string | undefined {
  try {
    const out = execFileSync('ss', ['-ltnpH', 'sport = :443'], { encoding: 'utf8' }).trim()
    return out || undefined
  } catch (e) {
    return `ss failed: ${(e as Error).message}`
  }
}

async function orchestrate(): Promise<void> {
  const stamp = new Date().toISOString().replace(/[T:]/g, '-').slice(0, 19)
  const RUNS = Number(values.runs)
  const small = { devices: Number(values['small-devices']), files: Number(values['small-files']) }
  const large = { devices: Number(values['large-devices']), files: Number(values['large-files']) }
  const t0 = Date.now()
  log(`file upload bench ${stamp} UTC; node ${process.version}; ${RUNS} interleaved runs; 1 MB: ${small.devices} devices × ${small.files} files; 64 MB: ${large.devices} devices × ${large.files} files`)
  // the hub runs from the working tree: which code that was
  const git = (...a: string[]) => { try { return execFileSync('git', a, { encoding: 'utf8' }).trim() } catch { return '?' } }
  const code = { head: git('rev-parse', '--short', 'HEAD'), uncommitted: git('status', '--porcelain', '--', 'src', 'shards', 'test/helpers').split('\n').filter(Boolean) }
  log(`hub code: ${code.head}${code.uncommitted.length ? ` + uncommitted: ${code.uncommitted.map((l) => l.slice(3)).join(', ')}` : ''}`)
  const rows: Row[] = []
  const idle: Record<string, number>[] = []
  let w: Worker | undefined
  let h: Hub | undefined
  try {
    h = await startHub('main hub (ephemeral ports)', [], Math.max(small.devices, large.devices))
    idle.push({ hubMsPerS: h.idleHubMsPerS, azMsPerS: h.idleAzMsPerS })
    w = new Worker(join(h.dataDir, 'tls', 'ca.pem'))
    await w.next('up')
    // warm-up, not counted: JIT of hub, Azurite and client, the container's creation
    rows.push(await runOnce(w, h, 'warmup', 0, 'replica', MB, small.devices, 2))
    rows.push(await runOnce(w, h, 'warmup', 0, 'replica', 64 * MB, 1, 1))
    for (let run = 1; run <= RUNS; run++) {
      rows.push(await runOnce(w, h, 'main', run, 'replica', MB, small.devices, small.files))
      rows.push(await runOnce(w, h, 'main', run, 'replica', 64 * MB, large.devices, large.files))
    }
    const du = execFileSync('du', ['-sm', join(h.dataDir, 'blobs')], { encoding: 'utf8' }).split(/\s/)[0]
    const n = await h.hub.rest('GET', `/messages/serviceBound/filenotifications?${API}`)
    log(`blob store data ${du} MB; one file notification: ${n.status} ${JSON.stringify(n.body)?.slice(0, 300)}`)
    await stopHub(h); h = undefined

    if (values.sdk === 'true') {
      // the SDK dials 443: wait while someone else holds it, bounded
      const waitUntil = Date.now() + Number(values['port-wait-s']) * 1000
      let holder = port443Holder()
      while (holder && Date.now() < waitUntil) { log(`443 is taken, waiting: ${holder}`); await sleep(10_000); holder = port443Holder() }
      if (holder) log(`SDK phase skipped: 443 still taken after ${values['port-wait-s']} s: ${holder}`)
      else {
        log('443 free (ss -ltnp shows no listener); SDK phase on a hub listening on 127.0.0.1:443')
        for (let attempt = 1; attempt <= 3 && !h; attempt++) {
          try { h = await startHub('SDK hub (HTTPS on 443)', ['--https-port', '443'], Math.max(small.devices, large.devices)) }
          catch (e) { log(`SDK hub did not start (attempt ${attempt}): ${(e as Error).message.slice(0, 300)}`); await sleep(10_000) }
        }
        if (h) {
          idle.push({ hubMsPerS: h.idleHubMsPerS, azMsPerS: h.idleAzMsPerS })
          rows.push(await runOnce(w, h, 'sdk-warmup', 0, 'sdk', MB, small.devices, 4))
          rows.push(await runOnce(w, h, 'sdk-warmup', 0, 'sdk', 64 * MB, 1, 1))
          // the SDK and the replica side by side on this hub, in the order SDK, replica, replica, SDK
          for (const [size, c] of [[MB, small], [64 * MB, large]] as const) {
            for (const [run, mode] of [[1, 'sdk'], [1, 'replica'], [2, 'replica'], [2, 'sdk']] as const) rows.push(await runOnce(w, h, 'sdk', run, mode, size, c.devices, c.files))
          }
          await stopHub(h); h = undefined
        }
      }
    }
  } finally {
    w?.send({ cmd: 'exit' })
    if (h) await stopHub(h)
  }

  const range = (xs: number[], d = 0) => xs.length ? `${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)}` : '–'
  const main = rows.filter((r) => r.phase === 'main')
  log(`\n| ${RUNS} interleaved runs, ranges | MB/s | per-file latency p50 / p95 ms | hub CPU ms/MB | Azurite CPU ms/MB | client CPU ms/MB | hub CPU ms/file (above idle) | machine busy % (others) | failed | sha256 |`)
  log('|---|---|---|---|---|---|---|---|---|---|')
  for (const [size, c] of [[1, small], [64, large]] as const) {
    const r = main.filter((x) => x.sizeMB === size)
    log(`| ${size} MB, ${c.devices} devices at once × ${c.files} files each | ${range(r.map((x) => x.mbps), 1)} | ${range(r.map((x) => x.p50))} / ${range(r.map((x) => x.p95))} | ${range(r.map((x) => x.hubMsPerMB), 2)} | ${range(r.map((x) => x.azMsPerMB), 1)} | ${range(r.map((x) => x.clientMsPerMB), 1)} | ${range(r.map((x) => x.hubMsPerFile), 2)} (${range(r.map((x) => x.hubNetMsPerFile), 2)}) | ${range(r.map((x) => x.machinePct))} (${range(r.map((x) => x.othersPct))}) | ${r.reduce((s, x) => s + x.failed, 0)} | ${r.every((x) => x.verified.ok) ? `${r.length}/${r.length} match` : 'MISMATCH'} |`)
  }
  const sdk = rows.filter((r) => r.phase === 'sdk')
  if (sdk.length) {
    log('\n| SDK phase (hub on 443), 2 runs each (SDK, replica, replica, SDK), ranges | MB/s | p50 / p95 ms | hub CPU ms/MB | Azurite CPU ms/MB | client CPU ms/MB | hub CPU ms/file | machine busy % (others) | failed | sha256 |')
    log('|---|---|---|---|---|---|---|---|---|---|')
    for (const size of [1, 64]) {
      for (const mode of ['sdk', 'replica'] as const) {
        const r = sdk.filter((x) => x.sizeMB === size && x.mode === mode)
        log(`| ${size} MB, ${mode === 'sdk' ? '`uploadToBlob` (azure-iot-device, Http)' : 'replica'} | ${range(r.map((x) => x.mbps), 1)} | ${range(r.map((x) => x.p50))} / ${range(r.map((x) => x.p95))} | ${range(r.map((x) => x.hubMsPerMB), 2)} | ${range(r.map((x) => x.azMsPerMB), 1)} | ${range(r.map((x) => x.clientMsPerMB), 1)} | ${range(r.map((x) => x.hubMsPerFile), 2)} | ${range(r.map((x) => x.machinePct))} (${range(r.map((x) => x.othersPct))}) | ${r.reduce((s, x) => s + x.failed, 0)} | ${r.every((x) => x.verified.ok) ? `${r.length}/${r.length} match` : 'MISMATCH'} |`)
      }
    }
  }
  log(`\ntotal ${((Date.now() - t0) / 1000).toFixed(0)} s`)
  if (values.write !== 'true') return
  const base = join('bench', 'results', `${stamp}-file-upload`)
  writeFileSync(`${base}.json`, JSON.stringify({ stamp, node: process.version, code, args: values, idle, rows }, null, 2))
  writeFileSync(`${base}.txt`, lines.join('\n') + '\n')
  console.log(`\nwrote ${base}.json and ${base}.txt`)
}

if (values.client) await clientMain()
else {
  try { await orchestrate() } catch (e) { console.error(e); process.exitCode = 1 }
  process.exit()
}
