// The data directory holds every policy and device key (hub.mdb) and the CA's private key: it is
// created readable by the hub's user only, its store files are kept 0600, and a directory that
// already exists with looser permissions is reported at start (changing an operator's directory
// behind their back would surprise them more than a warning).
import { chmodSync, existsSync, mkdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import type { Logger } from '../log.js'

export const STORE_FILES = ['hub.mdb', 'hub.mdb-lock']

/** Before the store opens: creates the directory 0700, or warns when an existing one lets others in. */
export function prepareDataDir(dataDir: string, log: Pick<Logger, 'warn'>): void {
  if (!existsSync(dataDir)) {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 })
    chmodSync(dataDir, 0o700) // mkdir's mode is filtered by the umask
    return
  }
  const mode = statSync(dataDir).mode & 0o777
  if ((mode & 0o077) !== 0) {
    log.warn('the data directory is open to other users; it holds every key of the hub', { dataDir, mode: `0${mode.toString(8)}`, fix: `chmod 700 ${dataDir}` })
  }
}

/** After the store opened (LMDB creates its files with the umask's mode): owner read and write only. */
export function protectStoreFiles(dataDir: string): void {
  for (const f of STORE_FILES) {
    const file = join(dataDir, f)
    if (existsSync(file)) chmodSync(file, 0o600)
  }
}
