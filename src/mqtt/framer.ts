// Splits an MQTT byte stream into packets. PUBLISH, the hot path, is decoded here without
// allocating objects; every other packet goes whole to mqtt-packet's parser.
export const PUBLISH = 3

export class FrameError extends Error {}

export interface FrameHandler {
  publish(topic: string, payload: Buffer, qos: number, packetId: number, retain: boolean, dup: boolean): void
  /** A complete non-PUBLISH packet: the exact bytes, header included. */
  other(type: number, packet: Buffer): void
}

export class MqttFramer {
  private pending: Buffer | null = null

  constructor(private readonly maxPacketBytes: number) {}

  /** Feeds bytes; calls the handler for each complete packet. Throws FrameError on malformed input. */
  push(chunk: Buffer, handler: FrameHandler): void {
    let buf = chunk
    if (this.pending) {
      buf = Buffer.concat([this.pending, chunk])
      this.pending = null
    }
    let pos = 0
    const end = buf.length
    while (pos < end) {
      if (end - pos < 2) break
      const first = buf[pos]!
      // remaining length: at most 4 bytes of 7 bits
      let remaining = 0, mul = 1, i = pos + 1, complete = false
      for (let n = 0; n < 4; n++, i++) {
        if (i >= end) break
        const b = buf[i]!
        remaining += (b & 0x7f) * mul
        mul *= 128
        if ((b & 0x80) === 0) { complete = true; i++; break }
        if (n === 3) throw new FrameError('malformed remaining length')
      }
      if (!complete) break
      if (remaining > this.maxPacketBytes) throw new FrameError(`packet of ${remaining} bytes exceeds the ${this.maxPacketBytes}-byte limit`)
      const bodyStart = i
      const packetEnd = bodyStart + remaining
      if (packetEnd > end) break
      const type = first >> 4
      if (type === PUBLISH) this.decodePublish(buf, first, bodyStart, packetEnd, handler)
      else handler.other(type, buf.subarray(pos, packetEnd))
      pos = packetEnd
    }
    if (pos < end) this.pending = pos === 0 ? buf : buf.subarray(pos)
  }

  private decodePublish(buf: Buffer, first: number, start: number, end: number, handler: FrameHandler): void {
    const qos = (first >> 1) & 3
    if (qos === 3) throw new FrameError('PUBLISH with QoS 3')
    if (end - start < 2) throw new FrameError('PUBLISH too short')
    const topicLen = (buf[start]! << 8) | buf[start + 1]!
    let p = start + 2 + topicLen
    if (p > end) throw new FrameError('PUBLISH topic overruns the packet')
    const topic = buf.toString('utf8', start + 2, p)
    let packetId = 0
    if (qos > 0) {
      if (p + 2 > end) throw new FrameError('PUBLISH without packet id')
      packetId = (buf[p]! << 8) | buf[p + 1]!
      if (packetId === 0) throw new FrameError('PUBLISH with packet id 0')
      p += 2
    }
    handler.publish(topic, buf.subarray(p, end), qos, packetId, (first & 1) === 1, (first & 8) === 8)
  }
}
