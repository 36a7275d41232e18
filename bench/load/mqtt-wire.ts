// The few MQTT 3.1.1 packets a load generator writes, encoded once and patched in place, and a
// minimal reader for what comes back. Cheap on purpose: the generator must not be the bottleneck.
import { remainingLength } from '../../src/mqtt/packets.js'

function str(s: string): Buffer {
  const b = Buffer.from(s, 'utf8')
  return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b])
}

export function connectPacket(o: { clientId: string; username?: string; password?: string; keepalive: number; clean: boolean }): Buffer {
  let flags = o.clean ? 0x02 : 0
  if (o.username !== undefined) flags |= 0x80
  if (o.password !== undefined) flags |= 0x40
  const body = Buffer.concat([
    str('MQTT'), Buffer.from([4, flags, o.keepalive >> 8, o.keepalive & 0xff]), str(o.clientId),
    ...(o.username !== undefined ? [str(o.username)] : []), ...(o.password !== undefined ? [str(o.password)] : []),
  ])
  return Buffer.concat([Buffer.from([0x10, ...remainingLength(body.length)]), body])
}

/** A PUBLISH whose packet id and first 8 payload bytes (a µs timestamp) are patched per message. */
export class PublishTemplate {
  readonly bytes: Buffer
  readonly packetIdAt: number
  readonly payloadAt: number

  constructor(topic: string, payloadSize: number, qos: 0 | 1) {
    const t = str(topic)
    const bodyLen = t.length + (qos ? 2 : 0) + payloadSize
    const header = Buffer.from([0x30 | (qos << 1), ...remainingLength(bodyLen)])
    this.bytes = Buffer.alloc(header.length + bodyLen, 0x61)
    header.copy(this.bytes, 0)
    t.copy(this.bytes, header.length)
    this.packetIdAt = qos ? header.length + t.length : -1
    this.payloadAt = header.length + t.length + (qos ? 2 : 0)
  }

  /** Writes one message into `out` at `at`; returns the next write position. */
  writeInto(out: Buffer, at: number, packetId: number, timestampMicros: number): number {
    this.bytes.copy(out, at)
    if (this.packetIdAt >= 0) out.writeUInt16BE(packetId, at + this.packetIdAt)
    out.writeDoubleLE(timestampMicros, at + this.payloadAt)
    return at + this.bytes.length
  }
}

export const PINGREQ = Buffer.from([0xc0, 0])
export const DISCONNECT = Buffer.from([0xe0, 0])

export function subscribePacket(packetId: number, filter: string, qos: number): Buffer {
  const body = Buffer.concat([Buffer.from([packetId >> 8, packetId & 0xff]), str(filter), Buffer.from([qos])])
  return Buffer.concat([Buffer.from([0x82, ...remainingLength(body.length)]), body])
}

export function pubackPacket(packetId: number): Buffer {
  return Buffer.from([0x40, 2, packetId >> 8, packetId & 0xff])
}

export interface Incoming {
  type: number
  /** CONNACK return code, PUBACK/SUBACK packet id, or PUBLISH packet id (0 for QoS 0) */
  value: number
  /** PUBLISH only: payload bounds in `buf` */
  buf?: Buffer
  payloadAt?: number
  payloadEnd?: number
}

/** Splits a byte stream into packets; calls `on` for each. */
export class PacketReader {
  private pending: Buffer | null = null

  push(chunk: Buffer, on: (p: Incoming) => void): void {
    let buf = this.pending ? Buffer.concat([this.pending, chunk]) : chunk
    this.pending = null
    let pos = 0
    while (pos + 2 <= buf.length) {
      let len = 0, mul = 1, i = pos + 1, done = false
      for (; i < buf.length && i < pos + 5; i++) {
        len += (buf[i]! & 0x7f) * mul
        mul *= 128
        if ((buf[i]! & 0x80) === 0) { done = true; i++; break }
      }
      if (!done || i + len > buf.length) break
      const type = buf[pos]! >> 4
      if (type === 3) {
        const qos = (buf[pos]! >> 1) & 3
        const tlen = buf.readUInt16BE(i)
        let p = i + 2 + tlen
        let id = 0
        if (qos) { id = buf.readUInt16BE(p); p += 2 }
        on({ type, value: id, buf, payloadAt: p, payloadEnd: i + len })
      } else if (type === 2) {
        on({ type, value: buf[i + 1]! })
      } else {
        on({ type, value: len >= 2 ? buf.readUInt16BE(i) : 0 })
      }
      pos = i + len
    }
    if (pos < buf.length) this.pending = buf.subarray(pos)
    buf = Buffer.alloc(0)
  }
}

export const CONNACK = 2, PUBLISH = 3, PUBACK = 4, SUBACK = 9, PINGRESP = 13
