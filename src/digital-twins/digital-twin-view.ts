// IoT Plug and Play's digital twin, built from the device twin the way Azure's `/digitaltwins` API
// shows it: each property once, its value from the reported section (a writable property's
// acknowledgement `{value, ac, av, ad}` shows as its value), and in `$metadata` what the service
// asked (desiredValue, desiredVersion) beside what the device acknowledged (ackVersion, ackCode,
// ackDescription). Components are the objects marked `"__t": "c"`; each gets its own `$metadata`.
// A JSON Patch of the digital twin becomes a desired-properties patch of the twin.
import { HubError } from '../rest/hub-error.js'
import { checkPropertyPath } from '../../shards/twin-rules.js'

type Json = Record<string, unknown>
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v)
const COMPONENT_MARKER = '__t'

interface TwinSections { desired: Json; reported: Json }

function isComponent(v: unknown): v is Json {
  return isObject(v) && v[COMPONENT_MARKER] === 'c'
}

/** A writable property's acknowledgement as the PnP conventions write it in reported. */
function isAck(v: unknown): v is { value: unknown; ac?: number; av?: number; ad?: string } {
  return isObject(v) && 'value' in v && ('ac' in v || 'av' in v)
}

function lastUpdated(meta: unknown): string | undefined {
  return isObject(meta) && typeof meta.$lastUpdated === 'string' ? meta.$lastUpdated : undefined
}

/** One level (the root, or a component): its properties and its `$metadata`. */
function level(desired: Json, desiredMeta: Json, desiredVersion: number, reported: Json, reportedMeta: Json): { values: Json; metadata: Json } {
  const values: Json = {}
  const metadata: Json = {}
  const names = new Set([...Object.keys(desired), ...Object.keys(reported)].filter((k) => !k.startsWith('$') && k !== COMPONENT_MARKER))
  for (const name of names) {
    if (isComponent(desired[name]) || isComponent(reported[name])) continue
    const m: Json = {}
    if (name in desired) {
      m.desiredValue = desired[name]
      const dm = desiredMeta[name]
      m.desiredVersion = isObject(dm) && typeof dm.$lastUpdatedVersion === 'number' ? dm.$lastUpdatedVersion : desiredVersion
    }
    if (name in reported) {
      const r = reported[name]
      if (isAck(r)) {
        values[name] = r.value
        if (r.av !== undefined) m.ackVersion = r.av
        if (r.ac !== undefined) m.ackCode = r.ac
        if (r.ad !== undefined) m.ackDescription = r.ad
      } else {
        values[name] = r
      }
    }
    const when = lastUpdated(reportedMeta[name]) ?? lastUpdated(desiredMeta[name])
    if (when) m.lastUpdateTime = when
    metadata[name] = m
  }
  return { values, metadata }
}

/** The digital twin of a device (or module) twin. */
export function digitalTwinOf(id: string, etag: string, modelId: string, twin: TwinSections): Json {
  const desired = twin.desired
  const reported = twin.reported
  const dMeta = isObject(desired.$metadata) ? desired.$metadata : {}
  const rMeta = isObject(reported.$metadata) ? reported.$metadata : {}
  const version = typeof desired.$version === 'number' ? desired.$version : 1
  const root = level(desired, dMeta, version, reported, rMeta)
  const out: Json = { $dtId: id, $etag: etag, ...root.values }
  const components = new Set([...Object.keys(desired), ...Object.keys(reported)].filter((k) => isComponent(desired[k]) || isComponent(reported[k])))
  for (const c of components) {
    const cd = isComponent(desired[c]) ? desired[c] as Json : {}
    const cr = isComponent(reported[c]) ? reported[c] as Json : {}
    const sub = level(cd, isObject(dMeta[c]) ? dMeta[c] as Json : {}, version, cr, isObject(rMeta[c]) ? rMeta[c] as Json : {})
    out[c] = { ...sub.values, $metadata: sub.metadata }
  }
  out.$metadata = { ...(modelId ? { $model: modelId } : {}), ...root.metadata }
  return out
}

/** Decodes one JSON Pointer segment (RFC 6901). */
function segment(s: string): string {
  return s.replace(/~1/g, '/').replace(/~0/g, '~')
}

/**
 * A JSON Patch (RFC 6902: add, replace, remove) of the digital twin as a desired-properties patch:
 * `/prop` at the root, `/component/prop` in a component (which keeps its marker). Paths deeper
 * than that set a property's inner value.
 */
export function desiredPatchOf(operations: unknown, twin: TwinSections): Json {
  if (!Array.isArray(operations) || operations.length === 0) throw new HubError(400004, 'the body must be a JSON Patch: a non-empty array of {"op", "path", "value"}')
  const patch: Json = {}
  for (const o of operations) {
    if (!isObject(o) || typeof o.op !== 'string' || typeof o.path !== 'string' || !o.path.startsWith('/')) {
      throw new HubError(400004, 'each operation needs "op" and a "path" starting with "/"')
    }
    if (o.op !== 'add' && o.op !== 'replace' && o.op !== 'remove') throw new HubError(400004, `JSON Patch op "${o.op}" is not supported: use add, replace or remove`)
    if (o.op !== 'remove' && !('value' in o)) throw new HubError(400004, `op "${o.op}" at ${o.path} needs a value`)
    const path = o.path.slice(1).split('/').map(segment)
    // names become nested objects below: checked first (no __proto__, no deeper than a twin may be)
    checkPropertyPath('desired', path)
    const value = o.op === 'remove' ? null : o.value
    let at = patch
    const first = path[0]!
    // a component's properties are written inside it, with its marker
    if (path.length > 1 && (isComponent(twin.desired[first]) || isComponent(twin.reported[first]))) {
      at = (patch[first] = isObject(patch[first]) ? patch[first] : { [COMPONENT_MARKER]: 'c' }) as Json
      path.shift()
    }
    for (const p of path.slice(0, -1)) at = (at[p] = isObject(at[p]) ? at[p] : {}) as Json
    at[path.at(-1)!] = value
  }
  return patch
}
