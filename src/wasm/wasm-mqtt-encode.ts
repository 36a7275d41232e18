// Acknowledgements encoded by the WASM module: a commit's PUBACKs come out as one Buffer, ready for
// a single socket write.
import { memoryBytes, ScratchRegion, wasm } from './hyperhub-wasm.js'

const region = new ScratchRegion(4096)

/** PUBACKs for `packetIds`, back to back, in one Buffer. */
export function encodePubacks(packetIds: ArrayLike<number>): Buffer {
  const count = packetIds.length
  region.ensure(count * 6)
  const ids = region.ptr
  const out = ids + count * 2
  const mem = memoryBytes
  for (let i = 0; i < count; i++) mem.writeUInt16LE(packetIds[i]! & 0xffff, ids + i * 2) // wasm reads u16 little-endian
  const bytes = wasm.encodePubacks(ids, count, out)
  return Buffer.from(mem.subarray(out, out + bytes)) // a copy: the region is reused by the next call
}

/** PINGRESP, encoded once. */
export const PINGRESP: Buffer = (() => {
  const n = wasm.encodePingresp(region.ptr)
  return Buffer.from(memoryBytes.subarray(region.ptr, region.ptr + n))
})()
