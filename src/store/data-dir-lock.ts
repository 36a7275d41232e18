// One hub per data directory. LMDB lets two processes open one store, but two hubs on it would each
// think they own every partition. `hub.lock` is created exclusively before the store opens and holds
// the pid and that process's start time: after a crash and a reboot the pid may belong to anything,
// and only the same pid started at the same moment is the hub that wrote it.
import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

interface LockHolder { pid: number; started: string | null }

/** A process's start time in clock ticks since boot (Linux); null where /proc does not tell. */
function startedAt(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // the name in parentheses may hold spaces: the fields after it are counted from the last ')'
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null
  } catch {
    return null
  }
}

function alive(holder: LockHolder): boolean {
  if (!Number.isInteger(holder.pid) || holder.pid === process.pid) return false // a hub of this process (tests restart one) takes it over
  const now = startedAt(holder.pid)
  if (holder.started !== null && now !== null) return now === holder.started
  return processAlive(holder.pid)
}

/** Whether a process with this pid exists (EPERM: it does, another user's). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

export class DataDirLockedError extends Error {}

/** Takes the data directory for this process, or throws DataDirLockedError naming the hub that has it. Returns the release. */
export function lockDataDir(dataDir: string): () => void {
  const file = join(dataDir, 'hub.lock')
  const mine: LockHolder = { pid: process.pid, started: startedAt(process.pid) }
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, JSON.stringify(mine), { flag: 'wx', mode: 0o600 })
      return () => {
        try {
          const holder = JSON.parse(readFileSync(file, 'utf8')) as LockHolder
          if (holder.pid === mine.pid && holder.started === mine.started) rmSync(file, { force: true })
        } catch { /* gone already */ }
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
    }
    let holder: LockHolder
    try {
      holder = JSON.parse(readFileSync(file, 'utf8')) as LockHolder
    } catch {
      holder = { pid: NaN, started: null } // unreadable: left half-written by a crash
    }
    if (alive(holder)) throw new DataDirLockedError(`another hub (process ${holder.pid}) is running on ${dataDir}; stop it first (if no hub runs there, remove ${file})`)
    // stale: its hub ended without removing it. Whoever creates it next (exclusively) has the directory
    rmSync(file, { force: true })
  }
  throw new DataDirLockedError(`another hub took ${dataDir} while this one started; stop it first (if no hub runs there, remove ${file})`)
}
