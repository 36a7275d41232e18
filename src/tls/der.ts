// Minimal DER (ASN.1 Distinguished Encoding Rules) encoder plus a tiny reader.
// Node has no certificate-building API, so X.509 structures are assembled from these primitives.
// Only what local-pki needs is here; every function returns one complete TLV as a Buffer.

function encodeLength(len: number): Buffer {
  if (len < 0x80) return Buffer.from([len])
  const bytes: number[] = []
  for (let n = len; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff)
  return Buffer.from([0x80 | bytes.length, ...bytes])
}

export function tlv(tag: number, content: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), encodeLength(content.length), content])
}

export const sequence = (...items: Buffer[]): Buffer => tlv(0x30, Buffer.concat(items))
export const set = (...items: Buffer[]): Buffer => tlv(0x31, Buffer.concat(items))
export const boolean = (v: boolean): Buffer => tlv(0x01, Buffer.from([v ? 0xff : 0x00]))
export const octetString = (b: Buffer): Buffer => tlv(0x04, b)
export const utf8String = (s: string): Buffer => tlv(0x0c, Buffer.from(s, 'utf8'))
export const bitString = (b: Buffer, unusedBits = 0): Buffer => tlv(0x03, Buffer.concat([Buffer.from([unusedBits]), b]))
/** [n] EXPLICIT: constructed context tag wrapping a complete TLV. */
export const explicit = (n: number, inner: Buffer): Buffer => tlv(0xa0 | n, inner)
/** [n] IMPLICIT on a primitive type: context tag replaces the universal tag, content kept. */
export const implicitPrimitive = (n: number, content: Buffer): Buffer => tlv(0x80 | n, content)

/** INTEGER from unsigned big-endian bytes: strip redundant leading zeros, add one if the high bit is set (else it reads as negative). */
export function integer(value: number | Buffer): Buffer {
  let b: Buffer
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) throw new Error(`DER integer: ${value} unsupported`)
    const hex = value.toString(16)
    b = Buffer.from(hex.length % 2 ? `0${hex}` : hex, 'hex')
  } else b = value
  let i = 0
  while (i < b.length - 1 && b[i] === 0 && (b[i + 1]! & 0x80) === 0) i++
  b = b.subarray(i)
  if (b.length === 0) b = Buffer.from([0])
  if (b[0]! & 0x80) b = Buffer.concat([Buffer.from([0]), b])
  return tlv(0x02, b)
}

export function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map(Number)
  if (arcs.length < 2 || arcs.some((a) => !Number.isSafeInteger(a) || a < 0)) throw new Error(`bad OID ${dotted}`)
  const out: number[] = []
  const push = (v: number): void => {
    const chunk = [v & 0x7f]
    for (v = Math.floor(v / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift(0x80 | (v & 0x7f))
    out.push(...chunk)
  }
  push(arcs[0]! * 40 + arcs[1]!)
  for (const a of arcs.slice(2)) push(a)
  return tlv(0x06, Buffer.from(out))
}

/** Named BIT STRING (e.g. KeyUsage): DER requires trailing zero bits to be dropped and counted as unused. */
export function namedBits(bits: number[]): Buffer {
  if (bits.length === 0) return bitString(Buffer.alloc(0))
  const top = Math.max(...bits)
  const bytes = Buffer.alloc(Math.floor(top / 8) + 1)
  for (const bit of bits) bytes[bit >> 3]! |= 0x80 >> (bit & 7)
  return bitString(bytes, 7 - (top & 7))
}

/** X.509 Time: RFC 5280 mandates UTCTime through 2049 and GeneralizedTime from 2050 on. */
export function time(d: Date): Buffer {
  const p = (n: number, w = 2): string => String(n).padStart(w, '0')
  const rest = `${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}Z`
  const y = d.getUTCFullYear()
  return y < 2050 ? tlv(0x17, Buffer.from(p(y % 100) + rest, 'ascii')) : tlv(0x18, Buffer.from(p(y, 4) + rest, 'ascii'))
}

export interface Tlv { tag: number; start: number; contentStart: number; end: number }

/** Reads the TLV header at `offset` (definite lengths only, which is all DER allows). */
export function readTlv(buf: Buffer, offset = 0): Tlv {
  const tag = buf[offset]
  let lenByte = buf[offset + 1]
  if (tag === undefined || lenByte === undefined) throw new Error('DER: truncated header')
  let len = lenByte
  let pos = offset + 2
  if (lenByte & 0x80) {
    const n = lenByte & 0x7f
    if (n === 0 || n > 4) throw new Error('DER: unsupported length')
    len = 0
    for (let i = 0; i < n; i++) {
      lenByte = buf[pos++]
      if (lenByte === undefined) throw new Error('DER: truncated length')
      len = len * 256 + lenByte
    }
  }
  if (pos + len > buf.length) throw new Error('DER: content overruns buffer')
  return { tag, start: offset, contentStart: pos, end: pos + len }
}

/** Child TLVs of a constructed TLV. */
export function children(buf: Buffer, parent: Tlv): Tlv[] {
  const out: Tlv[] = []
  for (let off = parent.contentStart; off < parent.end;) {
    const t = readTlv(buf, off)
    out.push(t)
    off = t.end
  }
  return out
}
