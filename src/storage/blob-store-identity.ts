// What keeps the embedded blob store's connection string the same across restarts: its account key
// and the port it listens on, both kept beside its data. The key gives full access to every blob,
// so the directory is owner-only and the key file owner-read/write only.
import { randomBytes } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

export const ACCOUNT_KEY_FILE = 'account-key'
export const PORT_FILE = 'port'
const KEY_BYTES = 64 // what Azure storage account keys are

/** Creates `dir` owner-only, or tightens it: it will hold the account key. */
export function ensurePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  if ((statSync(dir).mode & 0o777) !== 0o700) chmodSync(dir, 0o700) // mkdir's mode is filtered by the umask
}

// Write-then-rename: a crash never leaves a half-written key that would change the connection string.
function writeAtomic(file: string, data: string, mode: number): void {
  const tmp = `${file}.${process.pid}.tmp`
  writeFileSync(tmp, data, { mode })
  chmodSync(tmp, mode)
  renameSync(tmp, file)
}

/** The account key (base64), generated on first use. A damaged key file is an error, not a new key. */
export function loadOrCreateAccountKey(dir: string): string {
  const file = join(dir, ACCOUNT_KEY_FILE)
  if (!existsSync(file)) {
    const key = randomBytes(KEY_BYTES).toString('base64')
    writeAtomic(file, key + '\n', 0o600)
    return key
  }
  if ((statSync(file).mode & 0o777) !== 0o600) chmodSync(file, 0o600) // e.g. restored from a backup with the umask's mode
  const key = readFileSync(file, 'utf8').trim()
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(key) || Buffer.from(key, 'base64').length !== KEY_BYTES) {
    throw new Error(`${file} does not hold a ${KEY_BYTES}-byte base64 key; remove it to make a new one (clients then need the new connection string)`)
  }
  return key
}

/** The port chosen on an earlier start, if any. */
export function rememberedPort(dir: string): number | undefined {
  const file = join(dir, PORT_FILE)
  if (!existsSync(file)) return undefined
  const port = Number(readFileSync(file, 'utf8').trim())
  return Number.isInteger(port) && port > 0 && port < 65536 ? port : undefined
}

export function rememberPort(dir: string, port: number): void {
  if (rememberedPort(dir) !== port) writeAtomic(join(dir, PORT_FILE), `${port}\n`, 0o600)
}
