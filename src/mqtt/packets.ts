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

export function suback(packetId: number, granted: readonly number[]): Buffer {
  return Buffer.from([0x90, 2 + granted.length, packetId >> 8, packetId & 0xff, ...granted])
}

export function unsuback(packetId: number): Buffer {
  return Buffer.from([0xb0, 2, packetId >> 8, packetId & 0xff])
}

export const PINGRESP = Buffer.from([0xd0, 0])
