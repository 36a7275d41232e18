// Import and export jobs at registry size: N devices (each with tags and a desired property) created
// with bulk POST /devices in 100s, exported to the first hub's embedded blob store, and imported
// into a fresh hub. Devices per second, CPU ms per 1,000 devices (the hub process: main thread and
// shards; the blob store's child process beside it), the blob's size, and the longest event-loop
// delay of the hubs' main thread during each job (perf_hooks monitorEventLoopDelay, 1 ms
// resolution): the jobs run there in pages, so this is what a REST or MQTT client would wait.
// Both hubs run in this process (the idle one costs next to nothing; polling getJob every 250 ms
// is the bench's only work meanwhile).
//
// Baseline 2026-12-01, 2 vCPU container, Node 20: see bench/results/import-export-*.txt.
// Usage: NODE_EXTRA_CA_CERTS=.test-pki/ca.pem npx tsx bench/import-export.ts [--devices 100000]
// Loopback only; every loop is bounded in count and time.
import https from 'node:https'
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { BlobServiceClient, ContainerSASPermissions, generateBlobSASQueryParameters, SASProtocol, StorageSharedKeyCredential } from '@azure/storage-blob'
import { parseStorageConnectionString } from '../src/storage/storage-connection-string.js'
import { startTestHub, type TestHub } from '../test/helpers/test-hub.js'
import { cpuMs } from './load/proc-stats.js'

const { values } = parseArgs({ options: { devices: { type: 'string', default: '100000' }, concurrency: { type: 'string', default: '4' } } })
const N = Number(values.devices)
const CONCURRENCY = Number(values.concurrency)
const JOB_TIMEOUT_MS = 600_000
const V = 'api-version=2021-04-12'

if (!process.env.NODE_EXTRA_CA_CERTS) throw new Error('run with NODE_EXTRA_CA_CERTS=.test-pki/ca.pem (the bench reads the blob store)')

const log = (line: string) => console.log(line)
const cpuNowMs = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000 }

async function createDevices(t: TestHub): Promise<number> {
  const t0 = performance.now()
  let next = 0
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < N) {
      const from = next
      next += 100
      const body = Array.from({ length: Math.min(100, N - from) }, (_, i) => ({
        id: `ie-${String(from + i).padStart(7, '0')}`, importMode: 'create', status: 'enabled',
        tags: { fleet: 'bench', n: from + i }, properties: { desired: { interval: (from + i) % 60 } },
      }))
      const r = await t.rest('POST', `/devices?${V}`, { body })
      if (r.status !== 200 || !r.body.isSuccessful) throw new Error(`bulk create failed: ${r.status} ${r.text.slice(0, 300)}`)
    }
  }))
  return performance.now() - t0
}

interface JobFigures { wallMs: number; cpuMs: number; blobStoreCpuMs: number; maxLoopDelayMs: number; p99LoopDelayMs: number; maxGcMs: number; gcMs: number; job: any }

async function measured(t: TestHub, blobStorePid: number | undefined, body: unknown): Promise<JobFigures> {
  const h = monitorEventLoopDelay({ resolution: 1 })
  // the main thread's garbage collection pauses, to tell the jobs' own steps from the collector's
  let maxGcMs = 0
  let gcMs = 0
  const gc = new PerformanceObserver((list) => { for (const e of list.getEntries()) { maxGcMs = Math.max(maxGcMs, e.duration); gcMs += e.duration } })
  gc.observe({ entryTypes: ['gc'] })
  const cpu0 = cpuNowMs()
  const store0 = blobStorePid ? cpuMs(blobStorePid) : 0
  const t0 = performance.now()
  h.enable()
  const created = await t.rest('POST', `/jobs/create?${V}`, { body })
  if (created.status !== 200) throw new Error(`job not created: ${created.status} ${created.text}`)
  let job: any
  for (;;) {
    job = (await t.rest('GET', `/jobs/${created.body.jobId}?${V}`)).body
    if (['completed', 'failed', 'cancelled'].includes(job.status)) break
    if (performance.now() - t0 > JOB_TIMEOUT_MS) throw new Error(`job ${job.jobId} still ${job.status} after ${JOB_TIMEOUT_MS} ms`)
    await new Promise((r) => setTimeout(r, 250))
  }
  h.disable()
  gc.disconnect()
  return {
    wallMs: performance.now() - t0, cpuMs: cpuNowMs() - cpu0, blobStoreCpuMs: blobStorePid ? cpuMs(blobStorePid) - store0 : 0,
    maxLoopDelayMs: h.max / 1e6, p99LoopDelayMs: h.percentile(99) / 1e6, maxGcMs, gcMs, job,
  }
}

function report(name: string, f: JobFigures): void {
  log(`${name}: ${f.job.status}${f.job.failureReason ? ` (${f.job.failureReason})` : ''} — ${f.job.statusMessage ?? ''}`)
  log(`  ${(N / (f.wallMs / 1000)).toFixed(0)} devices/s (${(f.wallMs / 1000).toFixed(1)} s wall)`)
  log(`  hub process CPU ${(f.cpuMs / (N / 1000)).toFixed(1)} ms per 1,000 devices (${f.cpuMs.toFixed(0)} ms), blob store ${(f.blobStoreCpuMs / (N / 1000)).toFixed(1)} ms per 1,000`)
  log(`  event-loop delay: max ${f.maxLoopDelayMs.toFixed(1)} ms, p99 ${f.p99LoopDelayMs.toFixed(1)} ms; main-thread GC: longest pause ${f.maxGcMs.toFixed(1)} ms, ${f.gcMs.toFixed(0)} ms in all`)
}

log(`import-export bench ${new Date().toISOString()} — node ${process.version}, ${N} devices, bulk create concurrency ${CONCURRENCY}`)
const a = await startTestHub({ shards: 2 })
const b = await startTestHub({ shards: 2 })
try {
  await a.hub.blobStore.open()
  const cs = a.hub.blobStore.connectionString!
  const account = parseStorageConnectionString(cs)
  const credential = new StorageSharedKeyCredential(account.accountName, account.accountKey)
  const container = BlobServiceClient.fromConnectionString(cs).getContainerClient('bench-import-export')
  await container.createIfNotExists()
  const sas = `${container.url}?${generateBlobSASQueryParameters({
    containerName: container.containerName, permissions: ContainerSASPermissions.parse('rwdl'), expiresOn: new Date(Date.now() + 6 * 3600_000), protocol: SASProtocol.Https,
  }, credential).toString()}`

  const createMs = await createDevices(a)
  log(`created ${N} devices with bulk POST /devices in ${(createMs / 1000).toFixed(1)} s (${(N / (createMs / 1000)).toFixed(0)}/s)`)

  const exp = await measured(a, a.hub.blobStore.pid, { type: 'export', outputBlobContainerUri: sas, excludeKeysInExport: false })
  report('export', exp)
  const props = await container.getBlockBlobClient('devices.txt').getProperties()
  log(`  devices.txt: ${((props.contentLength ?? 0) / 1048576).toFixed(1)} MiB`)

  // the fresh hub reads the first hub's store: only that store's CPU is measured
  const imp = await measured(b, a.hub.blobStore.pid, { type: 'import', inputBlobContainerUri: sas, outputBlobContainerUri: sas })
  report('import', imp)
  const stats = (await b.rest('GET', `/statistics/devices?${V}`)).body
  const sample = (await b.rest('GET', `/twins/ie-${String(N - 1).padStart(7, '0')}?${V}`)).body
  log(`  fresh hub: ${stats.totalDeviceCount} devices; last device's tags ${JSON.stringify(sample.tags)}, desired interval ${sample.properties?.desired?.interval}`)
  log(`  hub RSS after both: ${(process.memoryUsage().rss / 1048576).toFixed(0)} MiB (both hubs and this bench in one process)`)
} finally {
  await Promise.all([a.stop(), b.stop()])
  https.globalAgent.destroy()
}
