// What a hub's endpoint outboxes hold on disk, read by a separate process: an LMDB reader that shares
// no database handles with the hub, so an outbox the hub dropped reads as gone (null).
import { execFile } from 'node:child_process'

const SCRIPT = `
import { open } from 'lmdb'
import { unpack } from 'msgpackr'
const [path, ...names] = process.argv.slice(1)
const root = open({ path, maxDbs: 1100, readOnly: true })
const out = {}
for (const name of names) {
  const db = root.openDB({ name, encoding: 'binary', create: false })
  let count = null
  if (db) {
    count = 0
    for (const { value } of db.getRange()) count += unpack(value)[2].length
  }
  out[name] = count
}
process.stdout.write(JSON.stringify(out))
`

/** Events in each named outbox DB (`outbox.{kind}.{name}.{p}`), or null when it does not exist. */
export function outboxEventCounts(dataDir: string, names: string[]): Promise<Record<string, number | null>> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--input-type=module', '-e', SCRIPT, `${dataDir}/hub.mdb`, ...names], { cwd: process.cwd(), timeout: 20_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${err.message}\n${stderr}`))
      else resolve(JSON.parse(stdout) as Record<string, number | null>)
    })
  })
}

export const outboxNames = (kind: 'storage' | 'webhook', name: string, partitions: number) =>
  Array.from({ length: partitions }, (_, p) => `outbox.${kind}.${name}.${p}`)
