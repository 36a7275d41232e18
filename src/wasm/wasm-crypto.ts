// Typed access to the module's SHA-256, HMAC-SHA256 and base64 (Node's lenient reading of it).
// Used by the differential tests and for signing; the SAS check itself is in wasm-sas.ts.
import { memoryBytes, ScratchRegion, wasm } from './hyperhub-wasm.js'

const region = new ScratchRegion(4096)

export function sha256Wasm(data: Uint8Array): Buffer {
  region.ensure(data.length + 32)
  const mem = memoryBytes
  const out = region.ptr + data.length
  mem.set(data, region.ptr)
  wasm.sha256(region.ptr, data.length, out)
  return Buffer.from(mem.subarray(out, out + 32))
}

export function hmacSha256Wasm(key: Uint8Array, message: Uint8Array): Buffer {
  region.ensure(key.length + message.length + 32)
  const mem = memoryBytes
  const keyPtr = region.ptr, msgPtr = keyPtr + key.length, out = msgPtr + message.length
  mem.set(key, keyPtr)
  mem.set(message, msgPtr)
  wasm.hmacSha256(keyPtr, key.length, msgPtr, message.length, out)
  return Buffer.from(mem.subarray(out, out + 32))
}

/** Same bytes as Buffer.from(text, 'base64'). */
export function base64DecodeWasm(text: string): Buffer {
  region.ensure(text.length * 2 + 8)
  const mem = memoryBytes
  const src = region.ptr, dst = src + text.length
  mem.write(text, src, 'latin1') // one byte per UTF-16 unit, as Node's decoder reads it
  const n = wasm.base64Decode(src, text.length, dst)
  return Buffer.from(mem.subarray(dst, dst + n))
}

/** Same text as bytes.toString('base64'). */
export function base64EncodeWasm(bytes: Uint8Array): string {
  const encodedLength = Math.ceil(bytes.length / 3) * 4
  region.ensure(bytes.length + encodedLength)
  const mem = memoryBytes
  const src = region.ptr, dst = src + bytes.length
  mem.set(bytes, src)
  const n = wasm.base64Encode(src, bytes.length, dst)
  return mem.toString('latin1', dst, dst + n)
}

/** Same as signature() in src/auth/sas-token.ts: base64 HMAC of `${rawResource}\n${rawExpiry}`. */
export function signatureWasm(base64Key: string, rawResource: string, rawExpiry: string): string {
  const key = base64DecodeWasm(base64Key)
  return base64EncodeWasm(hmacSha256Wasm(key, Buffer.from(`${rawResource}\n${rawExpiry}`, 'utf8')))
}
