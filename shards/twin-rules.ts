// Azure's content rules for twin documents (twins.md "Content rules"): key characters and length,
// value types, integer range, string length, nesting depth, and section sizes. Every violation is
// 400004 ArgumentInvalid (twins.md: the exact code is undocumented; ArgumentInvalid is the likely one).
import { HubError } from '../src/rest/hub-error.js'

export const SECTION_LIMITS = { tags: 8 * 1024, desired: 32 * 1024, reported: 32 * 1024 } as const
export type Section = keyof typeof SECTION_LIMITS
export const MAX_DEPTH = 10
const MAX_KEY_BYTES = 1024
const MAX_STRING_BYTES = 4 * 1024
const MIN_INT = -4503599627370496
const MAX_INT = 4503599627370495
// C0 and C1 control characters, '.', '$' and space
// eslint-disable-next-line no-control-regex
const BAD_KEY = /[\u0000-\u001f\u007f-\u009f.$ ]/

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function bad(section: Section, path: string, why: string): HubError {
  return new HubError(400004, `${section}${path ? `.${path}` : ''}: ${why}`)
}

/**
 * Checks a patch or document for one section. `level` counts nested objects: a top-level key's
 * object value is level 1, and level MAX_DEPTH is the deepest allowed.
 */
export function checkContent(section: Section, doc: unknown, allowNull: boolean): void {
  if (!isPlainObject(doc)) throw bad(section, '', 'must be a JSON object')
  checkObject(section, doc, '', 0, allowNull)
}

/** One property name against the rules (also for paths turned into patches, before any object is walked). */
function checkName(section: Section, k: string, path: string): void {
  const here = path ? `${path}.${k}` : k
  if (k.length === 0) throw bad(section, path, 'empty property name')
  if (Buffer.byteLength(k) > MAX_KEY_BYTES) throw bad(section, here, `property name longer than ${MAX_KEY_BYTES} bytes`)
  if (BAD_KEY.test(k)) throw bad(section, here, 'property names must not contain control characters, \'.\', \'$\' or spaces')
  // would reach an object's prototype when merged
  if (k === '__proto__') throw bad(section, here, 'the property name __proto__ is not supported')
}

/**
 * A path of property names that will become nested objects (a configuration's content path, a
 * digital twin's JSON Patch path): each name as the rules want it, and no deeper than the twin may be.
 */
export function checkPropertyPath(section: Section, names: readonly string[]): void {
  if (names.length > MAX_DEPTH) throw bad(section, names.slice(0, 3).join('.') + '…', `a path of ${names.length} names is deeper than ${MAX_DEPTH} levels`)
  let path = ''
  for (const k of names) {
    checkName(section, k, path)
    path = path ? `${path}.${k}` : k
  }
}

function checkObject(section: Section, obj: Record<string, unknown>, path: string, level: number, allowNull: boolean): void {
  if (level > MAX_DEPTH) throw bad(section, path, `nested deeper than ${MAX_DEPTH} levels`)
  for (const [k, v] of Object.entries(obj)) {
    checkName(section, k, path)
    checkValue(section, v, path ? `${path}.${k}` : k, level, allowNull)
  }
}

function checkValue(section: Section, v: unknown, path: string, level: number, allowNull: boolean): void {
  if (v === null) {
    if (!allowNull) throw bad(section, path, 'null is only allowed in a patch (it deletes the property)')
    return
  }
  switch (typeof v) {
    case 'boolean': return
    case 'number':
      if (!Number.isFinite(v)) throw bad(section, path, 'numbers must be finite')
      if (Number.isInteger(v) && (v < MIN_INT || v > MAX_INT)) throw bad(section, path, `integers must be within ${MIN_INT}..${MAX_INT}`)
      return
    case 'string':
      if (Buffer.byteLength(v) > MAX_STRING_BYTES) throw bad(section, path, `strings must be at most ${MAX_STRING_BYTES} bytes`)
      return
    case 'object':
      if (Array.isArray(v)) {
        if (level + 1 > MAX_DEPTH) throw bad(section, path, `nested deeper than ${MAX_DEPTH} levels`)
        v.forEach((item, i) => checkValue(section, item, `${path}[${i}]`, level + 1, false))
        return
      }
      return checkObject(section, v as Record<string, unknown>, path, level + 1, allowNull)
    default:
      throw bad(section, path, `unsupported value type ${typeof v}`)
  }
}

/** Azure's size: names plus values (strings by UTF-8 length, numbers 8, booleans 4), `$`-keys excluded. */
export function contentSize(v: unknown): number {
  if (typeof v === 'string') return Buffer.byteLength(v)
  if (typeof v === 'number') return 8
  if (typeof v === 'boolean') return 4
  if (Array.isArray(v)) return v.reduce<number>((s, x) => s + contentSize(x), 0)
  if (isPlainObject(v)) {
    let s = 0
    for (const [k, x] of Object.entries(v)) if (!k.startsWith('$')) s += Buffer.byteLength(k) + contentSize(x)
    return s
  }
  return 0
}

export function checkSize(section: Section, doc: Record<string, unknown>): void {
  const size = contentSize(doc)
  if (size > SECTION_LIMITS[section]) throw bad(section, '', `${size} bytes exceeds the ${SECTION_LIMITS[section]}-byte limit`)
}
