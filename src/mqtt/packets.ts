// The few fixed-shape packets the hub writes, built by hand: they are on the hot path.
export const CONNACK_ACCEPTED = 0
export const CONNACK_UNACCEPTABLE_PROTOCOL = 1
export const CONNACK_IDENTIFIER_REJECTED = 2
export const CONNACK_SERVER_UNAVAILABLE = 3
export const CONNACK_NOT_AUTHORIZED = 5

export function connack(returnCode: number, sessionPresent: boolean): Buffer {
  return Buffer.from([0x20, 2, sessionPresent && returnCode === 0 ? 1 : 0, returnCode])
}

/** PUBACKs for several packet ids, as one buffer so one write carries them all. */
export function pubacks(ids: readonly number[], from = 0, to = ids.length): Buffer {
  const out = Buffer.allocUnsafe((to - from) * 4)
  for (let i = from, o = 0; i < to; i++, o += 4) {
    const id = ids[i]!
    out[o] = 0x40; out[o + 1] = 2; out[o + 2] = id >> 8; out[o + 3] = id & 0xff
  }
  return out
}

/** MQTT's variable-length "remaining length": 7 bits a byte, high bit set while more follow. */
export function remainingLength(n: number): number[] {
  const out: number[] = []
  do {
    let b = n % 128
    n = Math.floor(n / 128)
    if (n > 0) b |= 0x80
    out.push(b)
  } while (n > 0)
  return out
}

export function suback(packetId: number, granted: readonly number[]): Buffer {
  return Buffer.from([0x90, ...remainingLength(2 + granted.length), packetId >> 8, packetId & 0xff, ...granted])
}

export function unsuback(packetId: number): Buffer {
  return Buffer.from([0xb0, 2, packetId >> 8, packetId & 0xff])
}

export const PINGRESP = Buffer.from([0xd0, 0])

/** MQTT topics carry a 16-bit length. */
export const MAX_TOPIC_BYTES = 65_535

export class PacketTooLargeError extends Error {}

/** A PUBLISH from the hub (C2D, twin responses and patches, method requests); throws PacketTooLargeError for a topic MQTT cannot carry. */
export function publish(topic: string, payload: Uint8Array, qos: number, packetId: number, dup: boolean): Buffer {
  const topicLen = Buffer.byteLength(topic)
  if (topicLen > MAX_TOPIC_BYTES) throw new PacketTooLargeError(`a topic of ${topicLen} bytes does not fit in a PUBLISH`)
  const remaining = 2 + topicLen + (qos > 0 ? 2 : 0) + payload.length
  const length = remainingLength(remaining)
  const out = Buffer.allocUnsafe(1 + length.length + remaining)
  out[0] = 0x30 | (dup ? 8 : 0) | (qos << 1)
  out.set(length, 1)
  let o = 1 + length.length
  out.writeUInt16BE(topicLen, o)
  o += 2
  o += out.write(topic, o, 'utf8')
  if (qos > 0) { out.writeUInt16BE(packetId, o); o += 2 }
  out.set(payload, o)
  return out
}
