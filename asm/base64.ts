// Base64 as Node's Buffer.from(s, 'base64') reads it, so verdicts match the JS path exactly:
// both alphabets (+/ and -_), characters outside them skipped, decoding stops at the first '='.
// JS writes strings here as latin1 (one byte per UTF-16 unit, high byte dropped), as Node does.
const INVALID: u8 = 0xff
const DECODE: usize = memory.data(256, 16)
const ENCODE: usize = memory.data<u8>([
  65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90,
  97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122,
  48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 43, 47,
])
let decodeTableReady = false

function buildDecodeTable(): void {
  memory.fill(DECODE, INVALID, 256)
  for (let i: u8 = 0; i < 64; i++) store<u8>(DECODE + <usize>load<u8>(ENCODE + <usize>i), i)
  store<u8>(DECODE + 45, 62) // '-'
  store<u8>(DECODE + 95, 63) // '_'
  decodeTableReady = true
}

/** Decodes src[0..len) to dst; returns the bytes written (at most len * 3 / 4). */
export function base64Decode(src: usize, len: i32, dst: usize): i32 {
  if (!decodeTableReady) buildDecodeTable()
  let acc: u32 = 0
  let n: i32 = 0 // valid characters in acc (0..3)
  let w: usize = dst
  for (let i = 0; i < len; i++) {
    const c = <usize>load<u8>(src + <usize>i)
    if (c == 61) break // '='
    const v = <u32>load<u8>(DECODE + c)
    if (v == INVALID) continue
    acc = (acc << 6) | v
    if (++n == 4) {
      store<u8>(w, <u8>(acc >> 16)); store<u8>(w, <u8>(acc >> 8), 1); store<u8>(w, <u8>acc, 2)
      w += 3; acc = 0; n = 0
    }
  }
  if (n == 2) { store<u8>(w, <u8>(acc >> 4)); w += 1 }
  else if (n == 3) { store<u8>(w, <u8>(acc >> 10)); store<u8>(w, <u8>(acc >> 2), 1); w += 2 }
  return <i32>(w - dst)
}

/** Encodes src[0..len) as padded standard base64 to dst; returns the characters written. */
export function base64Encode(src: usize, len: i32, dst: usize): i32 {
  let w: usize = dst
  let i = 0
  for (; i + 3 <= len; i += 3) {
    const v = (<u32>load<u8>(src + <usize>i) << 16) | (<u32>load<u8>(src + <usize>i, 1) << 8) | <u32>load<u8>(src + <usize>i, 2)
    store<u8>(w, load<u8>(ENCODE + <usize>(v >> 18)))
    store<u8>(w, load<u8>(ENCODE + <usize>((v >> 12) & 63)), 1)
    store<u8>(w, load<u8>(ENCODE + <usize>((v >> 6) & 63)), 2)
    store<u8>(w, load<u8>(ENCODE + <usize>(v & 63)), 3)
    w += 4
  }
  const rest = len - i
  if (rest > 0) {
    const v = (<u32>load<u8>(src + <usize>i) << 16) | (rest == 2 ? <u32>load<u8>(src + <usize>i, 1) << 8 : 0)
    store<u8>(w, load<u8>(ENCODE + <usize>(v >> 18)))
    store<u8>(w, load<u8>(ENCODE + <usize>((v >> 12) & 63)), 1)
    store<u8>(w, rest == 2 ? load<u8>(ENCODE + <usize>((v >> 6) & 63)) : 61, 2)
    store<u8>(w, 61, 3)
    w += 4
  }
  return <i32>(w - dst)
}
