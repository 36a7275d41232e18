// Loads the asm/ module once, synchronously at import, so callers need no await, and hands out
// scratch regions of its memory. Every call passes pointers into that memory: no generated
// bindings, no per-call allocation (the bindings cost ~150 ns a call in copies and GC).
import { readFileSync } from 'node:fs'
import { ensureWasmBuilt, wasmPath, type WasmTarget } from './ensure-built.js'

export interface HyperhubExports {
  memory: WebAssembly.Memory
  heapBase(): number
  frameMqtt(buf: number, len: number, maxPacket: number, out: number, maxRecords: number): number
  encodePubacks(ids: number, count: number, out: number): number
  encodePingresp(out: number): number
  sha256(ptr: number, len: number, out: number): void
  hmacSha256(key: number, keyLen: number, msg: number, msgLen: number, out: number): void
  base64Decode(src: number, len: number, dst: number): number
  base64Encode(src: number, len: number, dst: number): number
  verifySignature(msg: number, msgLen: number, key: number, keyLen: number, sig: number, sigLen: number, work: number): number
}

const target: WasmTarget = process.env.HYPERHUB_WASM_DEBUG === '1' ? 'debug' : 'release'
ensureWasmBuilt([target])
// types/webassembly.d.ts (shared) declares Instance without its constructor; the module has no imports
const InstanceWithModule = WebAssembly.Instance as unknown as new (module: WebAssembly.Module) => WebAssembly.Instance
const instance = new InstanceWithModule(new WebAssembly.Module(readFileSync(wasmPath(target))))
export const wasm = instance.exports as unknown as HyperhubExports

const PAGE = 65536
let top = wasm.heapBase()

/** A Buffer over the whole of the module's memory; replaced whenever the memory grows. */
export let memoryBytes = Buffer.from(wasm.memory.buffer)
/** Bumped on every growth, so holders of derived views know to rebuild them. */
export let memoryGeneration = 0

function reserve(bytes: number): number {
  const ptr = (top + 15) & ~15
  const end = ptr + bytes
  const have = wasm.memory.buffer.byteLength
  if (end > have) {
    wasm.memory.grow(Math.ceil((end - have) / PAGE))
    memoryBytes = Buffer.from(wasm.memory.buffer)
    memoryGeneration++
  }
  top = end
  return ptr
}

/**
 * A growable region of wasm memory owned by one subsystem. Growing moves it to fresh space at the
 * top (the old space is abandoned: regions only double, so the waste stays bounded).
 */
export class ScratchRegion {
  ptr: number
  capacity: number

  constructor(initialBytes: number) {
    this.capacity = initialBytes
    this.ptr = reserve(initialBytes)
  }

  /** Makes room for `bytes`; the contents are not kept. */
  ensure(bytes: number): void {
    if (bytes <= this.capacity) return
    let capacity = this.capacity * 2
    while (capacity < bytes) capacity *= 2
    this.ptr = reserve(capacity)
    this.capacity = capacity
  }
}
