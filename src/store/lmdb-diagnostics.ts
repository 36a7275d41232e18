// lmdb-js reports a failed commit three ways: the write's own promise rejects (the hub handles
// those), a promise of its own that nobody holds rejects as well, and the error is printed with
// console.error. Left alone, the second takes the thread down as an unhandled rejection and the
// third breaks the one-JSON-object-a-line log. Installed once per thread that writes.
import type { Logger } from '../log.js'

const LMDB_FRAME = /[\\/]node_modules[\\/]lmdb[\\/]/

/** An error raised inside lmdb-js (its stack runs through the package), or its "Commit failed" wrapper. */
export function isLmdbError(e: unknown): boolean {
  if (!(e instanceof Error)) return false
  return LMDB_FRAME.test(e.stack ?? '') || e.message.startsWith('Commit failed (see commitError')
}

let installed = false

export function containLmdbDiagnostics(log: Pick<Logger, 'warn'>): void {
  if (installed) return
  installed = true
  process.on('unhandledRejection', (reason) => {
    if (isLmdbError(reason)) return // the write that failed was answered through its own promise
    throw reason // anything else keeps Node's default: the thread stops
  })
  const print = console.error.bind(console)
  console.error = (...args: unknown[]) => {
    const lmdb = args.find(isLmdbError) as Error | undefined
    if (lmdb) log.warn('store error', { error: { name: lmdb.name, message: lmdb.message, code: (lmdb as { code?: unknown }).code } })
    else print(...args)
  }
}
