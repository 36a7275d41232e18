// CPU and memory of processes from /proc: what the generator and the server under test used.
import { readFileSync } from 'node:fs'

const TICK_MS = 10 // USER_HZ is 100 on Linux

/** utime + stime of a process (all its threads), in ms. */
export function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) * TICK_MS
  } catch {
    return 0
  }
}

/** Busy and total ms of the whole machine. */
export function machineMs(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number)
  const idle = line[3]! + (line[4] ?? 0)
  const total = line.reduce((a, b) => a + b, 0)
  return { busy: (total - idle) * TICK_MS, total: total * TICK_MS }
}

/** Resident memory split into anonymous (heap, buffers) and file-backed (LMDB's mapped pages, reclaimable) kB. */
export function rssSplitKb(pid: number): { anon: number; file: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const field = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+)`).exec(status)?.[1] ?? 0)
    return { anon: field('RssAnon'), file: field('RssFile') + field('RssShmem') }
  } catch {
    return { anon: 0, file: 0 }
  }
}

export function rssKb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) : 0
  } catch {
    return 0
  }
}

/** Samples CPU over a window: call stop() to get % of one core for each process and the machine. */
export function cpuWindow(pids: { server: number; generators: number[] }) {
  const start = { server: cpuMs(pids.server), gen: pids.generators.reduce((s, p) => s + cpuMs(p), 0), machine: machineMs(), at: Date.now() }
  return () => {
    const wall = Date.now() - start.at
    const machine = machineMs()
    const pct = (ms: number) => Math.round((1000 * ms) / wall) / 10
    return {
      serverCpu: pct(cpuMs(pids.server) - start.server),
      generatorCpu: pct(pids.generators.reduce((s, p) => s + cpuMs(p), 0) - start.gen),
      // /proc/stat counts every core: busy share of the machine in "% of one core" too
      machineCpu: pct(machine.busy - start.machine.busy),
    }
  }
}
