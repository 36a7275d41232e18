// Compiles asm/ with asc when its output is missing or older than the sources. Run before start
// and test (`npm run build:wasm`); the loader also calls it, so a stale checkout still works.
// Usage: node --import tsx src/wasm/ensure-built.ts [--debug] [--force]
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const SOURCES = join(ROOT, 'asm')
const CONFIG = join(ROOT, 'asconfig.json')
const ASC = join(ROOT, 'node_modules', 'assemblyscript', 'bin', 'asc.js')

export type WasmTarget = 'release' | 'debug'

export function wasmPath(target: WasmTarget = 'release'): string {
  return join(ROOT, 'build', 'wasm', `${target}.wasm`)
}

function newestSourceMtime(dir: string): number {
  let newest = statSync(CONFIG).mtimeMs
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    const mtime = entry.isDirectory() ? newestSourceMtime(path) : statSync(path).mtimeMs
    if (mtime > newest) newest = mtime
  }
  return newest
}

function isStale(target: WasmTarget): boolean {
  const out = wasmPath(target)
  if (!existsSync(out)) return true
  if (!existsSync(SOURCES)) return false // a deployment that ships only the build
  return statSync(out).mtimeMs < newestSourceMtime(SOURCES)
}

/** Builds the given targets if stale. Synchronous so module loaders can call it at import. */
export function ensureWasmBuilt(targets: readonly WasmTarget[] = ['release'], force = false): void {
  for (const target of targets) {
    if (!force && !isStale(target)) continue
    const out = wasmPath(target)
    // compile into a private directory, then rename: parallel test workers may race here, and a
    // reader must never see a half-written file
    const tmpDir = join(dirname(out), `.tmp-${process.pid}-${target}`)
    mkdirSync(tmpDir, { recursive: true })
    try {
      const tmpOut = join(tmpDir, `${target}.wasm`)
      const result = spawnSync(process.execPath, [ASC, '--config', CONFIG, '--target', target, '--outFile', tmpOut], {
        cwd: ROOT, encoding: 'utf8',
      })
      if (result.status !== 0) {
        throw new Error(`asc failed for target ${target} (exit ${result.status}):\n${result.stderr || result.stdout || result.error}`)
      }
      for (const name of readdirSync(tmpDir)) renameSync(join(tmpDir, name), join(dirname(out), name))
    } finally {
      rmSync(tmpDir, { recursive: true, force: true })
    }
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2)
  const targets: WasmTarget[] = args.includes('--debug') ? ['release', 'debug'] : ['release']
  ensureWasmBuilt(targets, args.includes('--force'))
  for (const t of targets) console.log(`${t}: ${wasmPath(t)}`)
}
