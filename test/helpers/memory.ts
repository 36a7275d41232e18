// What a process holds in memory, for tests that bound it.
import { readFileSync } from 'node:fs'

/** Anonymous resident memory of a process (heaps, buffers), without LMDB's file-backed pages. */
export function rssAnonBytes(pid: number): number {
  const m = /RssAnon:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  if (!m) throw new Error('no RssAnon')
  return Number(m[1]) * 1024
}
