// How a message is presented to the WASM VM: one flat, pointer-free byte image, written once per
// message and then evaluated against every route, so no route evaluation builds a JS object.
// All offsets are relative to the image start; integers little-endian.
//   0 u32 magic 'HRI1'   4 u32 length   8 u32 system count  12 u32 system table offset
//  16 u32 app count     20 u32 app table offset   24 u32 body node (0: undefined)   28 u32 twin node
// Tables: (u32 interned name id, u32 node offset) per property; only names some program uses.
// Nodes, 4-byte aligned, starting with a u32 tag (bytecode.ts Tag):
//   NULL | BOOL u32 0/1 | NUM f64 | STR u32 length, UTF-16 units (padded) |
//   ARR u32 count, u32 node offset per element (only up to the largest index a program uses) |
//   OBJ u32 count, (u32 member id, u32 node offset) per member — members whose names no program
//       uses are left out, so a 1 KB body shrinks to the few fields the routes read.
// Strings are UTF-16 so LENGTH, SUBSTRING, INDEX_OF and comparisons need no decoding in the VM.
import type { Value } from '../query-common/values.js'
import { Tag } from './bytecode.js'
import { defaultInterner, type NameInterner } from './name-interner.js'
import type { PreparedMessage } from './route-message.js'

export const IMAGE_MAGIC = 0x31495248
export const IMAGE_HEADER_BYTES = 32
/** Nodes nested deeper than this read as undefined (compiled paths are shorter; see MAX_PATH). */
export const MAX_IMAGE_DEPTH = 128

// one growable buffer with aligned views: every node starts 4-byte aligned
let bytes = new Uint8Array(16 * 1024)
let u32 = new Uint32Array(bytes.buffer)
let u16 = new Uint16Array(bytes.buffer)
let dv = new DataView(bytes.buffer)
let len = 0

function reserve(n: number): number {
  const at = len
  len += (n + 3) & ~3
  if (len > bytes.length) {
    let size = bytes.length * 2
    while (size < len) size *= 2
    const next = new Uint8Array(size)
    next.set(bytes.subarray(0, at))
    bytes = next
    u32 = new Uint32Array(bytes.buffer)
    u16 = new Uint16Array(bytes.buffer)
    dv = new DataView(bytes.buffer)
  }
  return at
}

function writeString(s: string): number {
  const n = s.length
  const at = reserve(8 + 2 * n)
  u32[at >> 2] = Tag.STR
  u32[(at >> 2) + 1] = n
  const base = (at + 8) >> 1
  for (let i = 0; i < n; i++) u16[base + i] = s.charCodeAt(i)
  return at
}

function writeValue(v: Value, ids: ReadonlyMap<string, number>, maxElements: number, depth: number): number {
  if (v === undefined || depth > MAX_IMAGE_DEPTH) return 0
  if (v === null) { const at = reserve(4); u32[at >> 2] = Tag.NULL; return at }
  switch (typeof v) {
    case 'boolean': { const at = reserve(8); u32[at >> 2] = Tag.BOOL; u32[(at >> 2) + 1] = v ? 1 : 0; return at }
    case 'number': { const at = reserve(12); u32[at >> 2] = Tag.NUM; dv.setFloat64(at + 4, v, true); return at }
    case 'string': return writeString(v)
  }
  if (Array.isArray(v)) {
    // elements past the largest index any program uses are unreachable: left out
    const count = Math.min(v.length, maxElements)
    const at = reserve(8 + 4 * count)
    u32[at >> 2] = Tag.ARR
    u32[(at >> 2) + 1] = count
    for (let k = 0; k < count; k++) {
      const child = writeValue(v[k], ids, maxElements, depth + 1)
      u32[(at >> 2) + 2 + k] = child
    }
    return at
  }
  if (typeof v !== 'object') return 0
  const o = v as Record<string, Value>
  let count = 0
  for (const key in o) if (ids.has(key)) count++
  const at = reserve(8 + 8 * count)
  u32[at >> 2] = Tag.OBJ
  u32[(at >> 2) + 1] = count
  let row = (at >> 2) + 2
  for (const key in o) {
    const id = ids.get(key)
    if (id === undefined || !Object.prototype.hasOwnProperty.call(o, key)) continue
    const child = writeValue(o[key], ids, maxElements, depth + 1)
    u32[row] = id
    u32[row + 1] = child
    row += 2
  }
  u32[(at >> 2) + 1] = (row - (at >> 2) - 2) >> 1
  return at
}

function writeTable(entries: Map<string, string>, space: 's' | 'a', interner: NameInterner, header: number): void {
  let count = 0
  for (const name of entries.keys()) if (interner.lookup(space, name) !== 0) count++
  const at = reserve(8 * count)
  u32[header >> 2] = count
  u32[(header >> 2) + 1] = at
  let row = at >> 2
  for (const [name, value] of entries) {
    const id = interner.lookup(space, name)
    if (id === 0) continue
    const node = writeString(value)
    u32[row] = id
    u32[row + 1] = node
    row += 2
  }
}

/**
 * Encodes a prepared message. The returned bytes are a view of a shared buffer, valid until the
 * next call: copy them (the WASM façade copies them into module memory) before encoding another.
 */
export function encodeMessageImage(message: PreparedMessage, interner: NameInterner = defaultInterner): Uint8Array {
  len = 0
  reserve(IMAGE_HEADER_BYTES)
  u32[0] = IMAGE_MAGIC
  writeTable(message.sys, 's', interner, 8)
  writeTable(message.app, 'a', interner, 16)
  const ids = interner.memberIds, maxElements = interner.maxIndex + 1
  const bodyNode = writeValue(message.body, ids, maxElements, 0)
  u32[6] = bodyNode
  const twinNode = writeValue(message.twin, ids, maxElements, 0)
  u32[7] = twinNode
  u32[1] = len
  return bytes.subarray(0, len)
}
