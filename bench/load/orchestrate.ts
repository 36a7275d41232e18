// Runs one scenario against one server: forks the generator processes and the back-end reader,
// starts them together, samples CPU and memory over the measurement window, and sums up.
import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { Histogram } from './histogram.js'
import { cpuWindow, rssKb } from './proc-stats.js'
import type { ReaderStats } from './backend-reader.js'
import type { PublishStats } from './publisher.js'
import type { RunningServer } from './servers.js'
import type { StormStats } from './storm.js'
import type { TransportKind } from './transport.js'

const here = (f: string) => fileURLToPath(new URL(f, import.meta.url))

export interface PublishScenario {
  kind: 'publish'
  transport: TransportKind
  devices: number
  qos: 0 | 1
  window: number
  payloadBytes: number
  rate: number
  warmupMs: number
  durationMs: number
  procs: number
  /** one back end reads everything the devices send */
  reader: boolean
}

export interface StormScenario {
  kind: 'storm'
  transport: TransportKind
  devices: number
  concurrency: number
  settleMs: number
}

export type Scenario = PublishScenario | StormScenario

export type Result = Record<string, number | string | null>

function child(file: string): ChildProcess {
  return fork(here(file), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
}

function next<T>(proc: ChildProcess, type: string, timeoutMs = 600_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${type}`)), timeoutMs)
    const on = (m: { type: string; message?: string } & T) => {
      if (m.type === 'error') { clearTimeout(t); proc.off('message', on); reject(new Error(m.message)) }
      if (m.type !== type) return
      clearTimeout(t)
      proc.off('message', on)
      resolve(m)
    }
    proc.on('message', on)
  })
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const round = (n: number | null, d = 2) => (n === null ? null : Math.round(n * 10 ** d) / 10 ** d)

export async function runPublish(server: RunningServer, s: PublishScenario): Promise<Result> {
  const creds = await server.devices(s.devices)
  let reader: ChildProcess | undefined
  if (s.reader) {
    reader = child('./reader-process.ts')
    reader.send({ type: 'start', config: server.reader() })
    await next(reader, 'ready')
  }
  const procs = Array.from({ length: s.procs }, () => child('./generator-process.ts'))
  procs.forEach((p, i) => p.send({
    type: 'run',
    job: {
      kind: 'publish',
      config: {
        target: server.target(s.transport), devices: creds.filter((_, j) => j % s.procs === i), qos: s.qos, window: s.window,
        payloadBytes: s.payloadBytes, rate: s.rate, warmupMs: s.warmupMs, durationMs: s.durationMs, connectConcurrency: 100,
        qos0Batch: 16, qos0Window: 1000, drainMs: 15_000,
      },
    },
  }))
  await Promise.all(procs.map((p) => next(p, 'ready')))
  const done = procs.map((p) => next<{ stats: PublishStats }>(p, 'done'))
  for (const p of procs) p.send({ type: 'go' })
  await sleep(s.warmupMs)
  const stopCpu = cpuWindow({ server: server.pid, generators: [...procs.map((p) => p.pid!), ...(reader ? [reader.pid!] : [])] })
  await sleep(s.durationMs)
  const cpu = stopCpu()
  const rss = rssKb(server.pid)
  const stats = (await Promise.all(done)).map((d) => d.stats)
  const latency = new Histogram()
  for (const st of stats) latency.merge(st.latency)
  const sum = (k: keyof PublishStats) => stats.reduce((a, st) => a + (st[k] as number), 0)
  const windowSeconds = Math.max(...stats.map((st) => st.windowSeconds))
  const result: Result = {
    devices: s.devices, connectFailures: sum('connectFailures'), connectPerSec: round(sum('connected') / Math.max(...stats.map((st) => st.connectSeconds)), 0),
    acceptedPerSec: round(sum('accepted') / windowSeconds, 0), ackP50: round(latency.percentileMs(0.5)), ackP99: round(latency.percentileMs(0.99)),
    ackP999: round(latency.percentileMs(0.999)), unackedAtEnd: sum('unackedAtEnd'), disconnects: sum('disconnects'), sentTotal: sum('sentTotal'),
    serverCpu: cpu.serverCpu, generatorCpu: cpu.generatorCpu, machineCpu: cpu.machineCpu, serverRssMb: round(rss / 1024, 1),
  }
  if (reader) {
    const sentTotal = sum('sentTotal')
    // let the back end catch up (bounded): until it has everything or stops making progress for 3 s
    let last = -1, still = 0
    for (let i = 0; i < 300 && still < 30; i++) {
      reader.send({ type: 'count' })
      const { received } = await next<{ received: number }>(reader, 'count')
      if (received >= sentTotal) break
      still = received === last ? still + 1 : 0
      last = received
      await sleep(100)
    }
    reader.send({ type: 'stop', windowStartUs: Math.min(...stats.map((st) => st.windowStartUs)), windowEndUs: Math.max(...stats.map((st) => st.windowEndUs)) })
    const r = (await next<{ stats: ReaderStats }>(reader, 'done')).stats
    const e2e = new Histogram()
    e2e.merge(r.latency)
    Object.assign(result, {
      deliveredPerSec: round(r.inWindow / windowSeconds, 0), lost: sentTotal - r.received,
      e2eP50: round(e2e.percentileMs(0.5)), e2eP99: round(e2e.percentileMs(0.99)), e2eP999: round(e2e.percentileMs(0.999)),
    })
  }
  return result
}

export async function runStorm(server: RunningServer, s: StormScenario): Promise<Result> {
  const creds = await server.devices(s.devices, 'storm-')
  await sleep(1000)
  const rssBefore = rssKb(server.pid)
  const gen = child('./generator-process.ts')
  gen.send({
    type: 'run',
    job: { kind: 'storm', config: { target: { ...server.target(s.transport), sourceAddresses: ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5'] }, devices: creds, concurrency: s.concurrency, holdMs: s.settleMs + 1000 } },
  })
  await next(gen, 'ready')
  const done = next<{ stats: StormStats }>(gen, 'done')
  const connected = next(gen, 'connected')
  gen.send({ type: 'go' })
  const stopCpu = cpuWindow({ server: server.pid, generators: [gen.pid!] })
  await connected
  const cpu = stopCpu()
  await sleep(s.settleMs)
  const rssAfter = rssKb(server.pid)
  const st = (await done).stats
  const latency = new Histogram()
  latency.merge(st.latency)
  return {
    devices: s.devices, connected: st.connected, connectFailures: st.failures, connectPerSec: round(st.connected / st.seconds, 0),
    connackP50: round(latency.percentileMs(0.5)), connackP99: round(latency.percentileMs(0.99)), alive: st.alive,
    serverRssMb: round(rssAfter / 1024, 1), bytesPerConnection: round(((rssAfter - rssBefore) * 1024) / Math.max(1, st.connected), 0),
    serverCpu: cpu.serverCpu, generatorCpu: cpu.generatorCpu, machineCpu: cpu.machineCpu,
  }
}
