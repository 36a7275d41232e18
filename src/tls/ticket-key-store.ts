// Session ticket keys kept in the data directory, so that a restarted hub still opens the tickets it
// issued before (a reconnect storm after a restart is when resumption pays most), and rotated on a
// timer so that one key never protects more than a bounded span of sessions.
//
// Scheme: a new key every `rotationMs` (12 h); a retired key is kept until the last ticket it issued
// has expired, i.e. `lifetimeMs` (24 h, the servers' sessionTimeout) after it stopped issuing. So any
// ticket younger than its lifetime resumes, across rotations and restarts; at most
// ceil(lifetime / rotation) + 1 keys (3) are held. Node's documented API takes one key only
// (`ticketKeys` / `setTicketKeys`); ticket-key-callback.ts says how several are used.
//
// The file holds secrets: mode 0600, written whole to a temporary file, fsynced and renamed over the
// old one. Key bytes are never logged. An unreadable or invalid file is replaced with a fresh key
// (tickets issued before then do full handshakes); a file that cannot be written leaves the keys in
// memory for this run, with a warning.
import { chmodSync, closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs'
import { dirname } from 'node:path'
import { newTicketKey, ticketKeyBytes, ticketKeyFrom, TicketKeyRing, type TicketKey } from './ticket-keys.js'

const HOUR = 3_600_000
export const TICKET_KEY_ROTATION_MS = 12 * HOUR
export const TICKET_LIFETIME_MS = 24 * HOUR
/** a file with more keys than this is not one this code wrote */
const MAX_KEYS_IN_FILE = 64
const FILE_VERSION = 1
/** setTimeout's limit */
const MAX_TIMER_MS = 2 ** 31 - 1

export interface TicketKeyStoreOptions {
  rotationMs?: number
  lifetimeMs?: number
  /** the clock (tests) */
  now?: () => number
  /** told of a replaced file or a failed write; never given key material */
  warn?: (message: string) => void
}

interface KeyFile { version: number; keys: { createdAt: number; key: string }[] }

export class TicketKeyStore {
  readonly ring: TicketKeyRing
  readonly rotationMs: number
  readonly lifetimeMs: number
  private readonly now: () => number
  private readonly warn: (message: string) => void
  private timer: NodeJS.Timeout | undefined
  private stopped = true

  private constructor(readonly file: string, o: TicketKeyStoreOptions) {
    this.rotationMs = o.rotationMs ?? TICKET_KEY_ROTATION_MS
    this.lifetimeMs = o.lifetimeMs ?? TICKET_LIFETIME_MS
    if (!(this.rotationMs > 0) || !(this.lifetimeMs > 0)) throw new Error('ticket key rotation and lifetime must be positive')
    this.now = o.now ?? Date.now
    this.warn = o.warn ?? (() => {})
    const loaded = this.read()
    this.ring = new TicketKeyRing(loaded ?? [newTicketKey(this.now())])
    if (!loaded) this.write()
    this.rotateIfDue()
  }

  /** Loads the keys in `file` (created, or replaced when unusable) and rotates them if one is due. */
  static open(file: string, o: TicketKeyStoreOptions = {}): TicketKeyStore {
    return new TicketKeyStore(file, o)
  }

  /** A new issuing key now; keys whose tickets have all expired are dropped. */
  rotate(): void {
    const now = this.now()
    this.ring.replace(this.pruned([newTicketKey(now), ...this.ring.keys], now))
    this.write()
  }

  /** Rotates when the current key has issued for `rotationMs` (or the clock went back past it). */
  rotateIfDue(): boolean {
    const age = this.now() - this.ring.current.createdAt
    if (age < this.rotationMs && age > -this.rotationMs) return false
    this.rotate()
    return true
  }

  /** Rotation on an unref'd timer: it never keeps the process alive. */
  startRotation(): void {
    this.stopped = false
    this.schedule()
  }

  stop(): void {
    this.stopped = true
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
  }

  private schedule(): void {
    if (this.stopped) return
    const due = this.ring.current.createdAt + this.rotationMs - this.now()
    this.timer = setTimeout(() => {
      this.rotateIfDue()
      this.schedule()
    }, Math.min(Math.max(due, 1000), MAX_TIMER_MS))
    this.timer.unref()
  }

  /** Newest first; a retired key stays while a ticket it issued may still be in its lifetime. */
  private pruned(keys: readonly TicketKey[], now: number): TicketKey[] {
    const out = [keys[0]!]
    for (let i = 1; i < keys.length; i++) {
      const retiredAt = keys[i - 1]!.createdAt // its successor's start: it issued nothing after that
      if (now < retiredAt + this.lifetimeMs) out.push(keys[i]!)
    }
    return out
  }

  private read(): TicketKey[] | undefined {
    let text: string
    try {
      text = readFileSync(this.file, 'utf8')
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') this.warn(`session ticket key file ${this.file} unreadable (${(e as NodeJS.ErrnoException).code}): replaced with a new key`)
      return undefined
    }
    const keys = parseKeyFile(text)
    if (!keys) {
      this.warn(`session ticket key file ${this.file} is not valid: replaced with a new key`)
      return undefined
    }
    try {
      if ((statSync(this.file).mode & 0o077) !== 0) chmodSync(this.file, 0o600) // someone widened it
    } catch { /* it was just read; a failed chmod is not a reason to drop the keys */ }
    return this.pruned(keys, this.now())
  }

  private write(): void {
    const body: KeyFile = {
      version: FILE_VERSION,
      keys: this.ring.keys.map((k) => ({ createdAt: k.createdAt, key: ticketKeyBytes(k).toString('base64') })),
    }
    const tmp = `${this.file}.${process.pid}.tmp`
    try {
      mkdirSync(dirname(this.file), { recursive: true, mode: 0o700 })
      const fd = openSync(tmp, 'w', 0o600)
      try {
        writeSync(fd, JSON.stringify(body) + '\n')
        fsyncSync(fd)
      } finally {
        closeSync(fd)
      }
      chmodSync(tmp, 0o600) // the open() mode is filtered by umask; make it exact
      renameSync(tmp, this.file)
    } catch (e) {
      try { rmSync(tmp, { force: true }) } catch { /* the directory itself is what failed */ }
      this.warn(`session ticket keys not saved to ${this.file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): tickets will not survive a restart`)
    }
  }
}

/** The keys in a key file, newest first, or undefined when it is not a whole, valid file. */
export function parseKeyFile(text: string): TicketKey[] | undefined {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return undefined
  }
  const f = parsed as Partial<KeyFile> | null
  if (!f || typeof f !== 'object' || f.version !== FILE_VERSION || !Array.isArray(f.keys)) return undefined
  if (f.keys.length === 0 || f.keys.length > MAX_KEYS_IN_FILE) return undefined
  const keys: TicketKey[] = []
  for (const k of f.keys as unknown[]) {
    const e = k as Partial<KeyFile['keys'][number]> | null
    if (!e || typeof e.key !== 'string' || typeof e.createdAt !== 'number' || !Number.isFinite(e.createdAt)) return undefined
    const bytes = Buffer.from(e.key, 'base64')
    if (bytes.length !== 48 || bytes.toString('base64') !== e.key) return undefined
    keys.push(ticketKeyFrom(bytes, e.createdAt))
  }
  keys.sort((a, b) => b.createdAt - a.createdAt)
  // two keys of one name could not both be found
  if (new Set(keys.map((k) => k.name.toString('hex'))).size !== keys.length) return undefined
  return keys
}
