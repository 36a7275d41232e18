// An export job's scan: every device (then each of its modules) as one ExportImportDevice JSON line,
// with its committed twin read from LMDB `twins`, written through a BlockBlobWriter. The scan goes
// a page at a time and yields the event loop between pages, so a registry of any size never holds
// the loop longer than one page. Edge devices come first, parents before children, so an import
// of the file meets every parent before a device that names it.
import type { Database, RootDatabase } from 'lmdb'
import type { DeviceRecord, DeviceRegistry } from '../registry/device-registry.js'
import { scopeJson } from '../registry/device-registry.js'
import type { ModuleRecord, ModuleRegistry } from '../registry/module-registry.js'
import { moduleKey } from '../shard-protocol.js'
import { twinEtag, type TwinDoc } from '../../shards/twin-store.js'
import type { BlockBlobWriter } from './block-blob-writer.js'

/** Devices per page (with their modules and twins): a few ms of the event loop each. */
export const EXPORT_PAGE = 200

export interface ExportSource {
  registry: DeviceRegistry
  modules: ModuleRegistry
  /** the twins as the shards committed them */
  twins: Database
  root: RootDatabase
}

export interface ExportRun {
  excludeKeys: boolean
  /** checked between pages */
  isCancelled: () => boolean
  /** identities written so far of about `total` */
  progress: (done: number, total: number) => void
}

export interface ExportCounts { devices: number; modules: number }

const EMPTY_TIME = '0001-01-01T00:00:00Z'
const turn = () => new Promise<void>((resolve) => setImmediate(resolve))
/** The longest the export holds the event loop between turns. */
const YIELD_MS = 10

function twinFields(doc: TwinDoc | undefined): Record<string, unknown> {
  // an identity from before twins existed has none stored: it reads as an empty twin
  if (!doc) {
    const empty = () => ({ $metadata: { $lastUpdated: EMPTY_TIME }, $version: 1 })
    return { twinETag: twinEtag(1), tags: {}, properties: { desired: empty(), reported: empty() } }
  }
  return { twinETag: twinEtag(doc.version), tags: doc.tags, properties: { desired: doc.desired, reported: doc.reported } }
}

function authentication(a: DeviceRecord['authentication'], excludeKeys: boolean): DeviceRecord['authentication'] {
  return excludeKeys ? { ...a, symmetricKey: { primaryKey: null, secondaryKey: null } } : a
}

/** One device's line (without its newline). */
export function deviceLine(d: DeviceRecord, twin: TwinDoc | undefined, excludeKeys: boolean): Record<string, unknown> {
  return {
    id: d.deviceId, eTag: d.etag, status: d.status, ...(d.statusReason !== null ? { statusReason: d.statusReason } : {}),
    authentication: authentication(d.authentication, excludeKeys), ...twinFields(twin), capabilities: d.capabilities, ...scopeJson(d),
  }
}

/** One module's line: its device's id, its own id, keys and twin (a module has no status). */
export function moduleLine(m: ModuleRecord, twin: TwinDoc | undefined, excludeKeys: boolean): Record<string, unknown> {
  return {
    id: m.deviceId, moduleId: m.moduleId, eTag: m.etag, authentication: authentication(m.authentication, excludeKeys),
    ...(m.managedBy !== null ? { managedBy: m.managedBy } : {}), ...twinFields(twin),
  }
}

/** Edge devices, each after the edge device it names as its parent (nesting is a few levels deep). */
export function parentsFirst(edges: DeviceRecord[]): DeviceRecord[] {
  const byScope = new Map<string, DeviceRecord>()
  for (const e of edges) if (e.deviceScope) byScope.set(e.deviceScope, e)
  const depth = (d: DeviceRecord): number => {
    const seen = new Set<string>([d.deviceId])
    let n = 0
    for (let at = byScope.get(d.parentScopes?.[0] ?? ''); at && !seen.has(at.deviceId); at = byScope.get(at.parentScopes?.[0] ?? '')) {
      seen.add(at.deviceId)
      n++
    }
    return n
  }
  return edges.map((d) => ({ d, n: depth(d) })).sort((a, b) => a.n - b.n).map((x) => x.d)
}

/** Writes every identity; resolves with the counts, or early (with what was written) when cancelled. */
export async function exportRegistry(src: ExportSource, out: BlockBlobWriter, run: ExportRun): Promise<ExportCounts> {
  const total = Math.max(1, src.registry.size + src.modules.size)
  const counts: ExportCounts = { devices: 0, modules: 0 }
  // pass 1: the edge devices (usually few), to write them first
  const edges: DeviceRecord[] = []
  let seen = 0
  for (const d of src.registry.values()) {
    if (d.capabilities.iotEdge) edges.push(d)
    if (++seen % (EXPORT_PAGE * 50) === 0) await turn()
  }
  // a line at a time into the blob writer (which stages a block each 4 MiB), and a turn for the
  // sockets every ~10 ms: a page of devices with 50 large module twins each is hundreds of MB of JSON
  let lastTurn = performance.now()
  const writePage = async (page: DeviceRecord[]) => {
    // a fresh read snapshot: the twins the shards committed since the last page
    src.root.resetReadTxn()
    const breathe = async () => {
      if (performance.now() - lastTurn < YIELD_MS) return
      await turn()
      lastTurn = performance.now()
    }
    for (const stale of page) {
      const d = src.registry.get(stale.deviceId)
      if (!d) continue // deleted while the export ran
      await out.write(JSON.stringify(deviceLine(d, src.twins.get(d.deviceId) as TwinDoc | undefined, run.excludeKeys)) + '\n')
      counts.devices++
      for (const m of modulesOf(src.modules, d.deviceId)) {
        await out.write(JSON.stringify(moduleLine(m, src.twins.get(moduleKey(m.deviceId, m.moduleId)) as TwinDoc | undefined, run.excludeKeys)) + '\n')
        counts.modules++
        await breathe()
      }
      await breathe()
    }
    run.progress(counts.devices + counts.modules, total)
  }
  const ordered = parentsFirst(edges)
  for (let i = 0; i < ordered.length && !run.isCancelled(); i += EXPORT_PAGE) await writePage(ordered.slice(i, i + EXPORT_PAGE))
  const written = new Set(ordered.map((d) => d.deviceId))
  // pass 2: every other device, live (a device added meanwhile is reached, one deleted is skipped)
  let page: DeviceRecord[] = []
  for (const d of src.registry.values()) {
    if (run.isCancelled()) return counts
    if (written.has(d.deviceId)) continue
    page.push(d)
    if (page.length >= EXPORT_PAGE) {
      await writePage(page)
      page = []
    }
  }
  if (page.length > 0 && !run.isCancelled()) await writePage(page)
  return counts
}

function modulesOf(modules: ModuleRegistry, deviceId: string): ModuleRecord[] {
  try {
    return modules.list(deviceId)
  } catch {
    return [] // the device went between its line and this
  }
}
