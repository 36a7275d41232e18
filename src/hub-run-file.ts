// `<data dir>/hub-running.json`: where a running hub listens, so that the command line finds it from
// the data directory alone (a hub started with --https-port 8443 is reached without repeating it).
// It holds no secret: keys stay in the store, the CA's key in tls/.
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

export interface HubRunInfo {
  pid: number
  hostName: string
  /** the address the listeners are bound to (0.0.0.0 or :: for all) */
  host: string
  ports: { https: number; mqtt: number; mqttTcp: number | null; amqp: number | null }
  caCertFile: string
  startedAt: string
}

const FILE = 'hub-running.json'

export function runFilePath(dataDir: string): string {
  return join(dataDir, FILE)
}

/** Written once every listener is bound; replaced whole, so a reader never sees half of it. */
export function writeRunFile(dataDir: string, info: HubRunInfo): void {
  const tmp = `${runFilePath(dataDir)}.${process.pid}.tmp`
  // created, never opened through a link someone left in its place
  rmSync(tmp, { force: true })
  writeFileSync(tmp, `${JSON.stringify(info, null, 2)}\n`, { flag: 'wx', mode: 0o644 })
  renameSync(tmp, runFilePath(dataDir))
}

/** Removed at stop, unless another hub has written it since. */
export function removeRunFile(dataDir: string, pid = process.pid): void {
  if (readRunFile(dataDir)?.pid === pid) rmSync(runFilePath(dataDir), { force: true })
}

export function readRunFile(dataDir: string): HubRunInfo | undefined {
  try {
    return JSON.parse(readFileSync(runFilePath(dataDir), 'utf8')) as HubRunInfo
  } catch {
    return undefined
  }
}
