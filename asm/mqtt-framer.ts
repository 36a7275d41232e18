// MQTT 3.1.1 framing over bytes JS has copied into this module's memory. Pure: all per-connection
// state (the unfinished tail) stays in JS, so one instance serves every connection.
// Results go to an i32 table at `out`, so JS reads them without a call or an object per packet:
//   out[0] records written   out[1] status (0 ok, else an error code below)
//   out[2] bytes consumed    out[3] bytes the unfinished packet at `consumed` needs in all (0: header incomplete)
//   then RECORD_WORDS words per packet:
//   [first byte, start, end, topic start, topic end, packet id, payload start, same topic]
// "same topic" is 1 when the topic bytes equal the previous PUBLISH's in this call: a device
// publishes to one topic, so JS decodes that string once per read instead of once per packet.

export const RECORD_WORDS: i32 = 8
export const HEADER_WORDS: i32 = 4

export const OK: i32 = 0
export const ERR_REMAINING_LENGTH: i32 = 1 // more than 4 bytes of remaining length
export const ERR_TOO_LARGE: i32 = 2 // above the configured maximum
export const ERR_RESERVED_FLAGS: i32 = 3 // §2.2.2 flags wrong for the packet type
export const ERR_QOS3: i32 = 4
export const ERR_PACKET_ID_ZERO: i32 = 5 // §2.3.1: QoS > 0 needs a non-zero id
export const ERR_TOPIC_OVERRUN: i32 = 6 // topic (or its length) runs past the packet
export const ERR_NO_PACKET_ID: i32 = 7 // QoS > 0 PUBLISH ends before its packet id
export const ERR_RESERVED_TYPE: i32 = 8 // types 0 and 15 are reserved in 3.1.1

const PUBLISH: u32 = 3

// §2.2.2 Table 2.2: required low nibble per type; 0xff = any (PUBLISH), 0xfe = reserved type
const REQUIRED_FLAGS: usize = memory.data<u8>([
  0xfe, 0, 0, 0xff, 0, 0, 2, 0, 2, 0, 2, 0, 0, 0, 0, 0xfe,
])

@inline function finish(out: usize, count: i32, status: i32, consumed: i32, needed: i32): i32 {
  store<i32>(out, count)
  store<i32>(out, status, 4)
  store<i32>(out, consumed, 8)
  store<i32>(out, needed, 12)
  return count
}

/** Frames up to `maxRecords` packets from buf[0..len). Never traps: bad input yields a status. */
export function frameMqtt(buf: usize, len: i32, maxPacket: i32, out: usize, maxRecords: i32): i32 {
  let pos: i32 = 0
  let count: i32 = 0
  let rec: usize = out + <usize>(HEADER_WORDS << 2)
  let prevTopicStart: i32 = 0
  let prevTopicLen: i32 = -1
  while (count < maxRecords && len - pos >= 2) {
    const first = <u32>load<u8>(buf + <usize>pos)
    const type = first >> 4
    const required = <u32>load<u8>(REQUIRED_FLAGS + <usize>type)
    if (required == 0xfe) return finish(out, count, ERR_RESERVED_TYPE, pos, 0)
    if (required != 0xff && (first & 15) != required) return finish(out, count, ERR_RESERVED_FLAGS, pos, 0)
    if (type == PUBLISH && ((first >> 1) & 3) == 3) return finish(out, count, ERR_QOS3, pos, 0)

    // remaining length: at most 4 bytes of 7 bits, least significant first
    let remaining: i32 = 0
    let shift: i32 = 0
    let i: i32 = pos + 1
    let complete = false
    for (let n = 0; n < 4 && i < len; n++) {
      const b = <i32>load<u8>(buf + <usize>i)
      i++
      remaining |= (b & 0x7f) << shift
      shift += 7
      if ((b & 0x80) == 0) { complete = true; break }
      if (n == 3) return finish(out, count, ERR_REMAINING_LENGTH, pos, 0)
    }
    if (!complete) return finish(out, count, OK, pos, 0)
    if (remaining > maxPacket) return finish(out, count, ERR_TOO_LARGE, pos, 0)
    const bodyStart = i
    const packetEnd = bodyStart + remaining
    if (packetEnd > len) return finish(out, count, OK, pos, packetEnd - pos)

    let topicStart: i32 = 0, topicEnd: i32 = 0, packetId: i32 = 0, payloadStart: i32 = 0, sameTopic: i32 = 0
    if (type == PUBLISH) {
      if (remaining < 2) return finish(out, count, ERR_TOPIC_OVERRUN, pos, 0)
      const topicLen = (<i32>load<u8>(buf + <usize>bodyStart) << 8) | <i32>load<u8>(buf + <usize>bodyStart, 1)
      topicStart = bodyStart + 2
      topicEnd = topicStart + topicLen
      if (topicEnd > packetEnd) return finish(out, count, ERR_TOPIC_OVERRUN, pos, 0)
      payloadStart = topicEnd
      if (((first >> 1) & 3) != 0) {
        if (topicEnd + 2 > packetEnd) return finish(out, count, ERR_NO_PACKET_ID, pos, 0)
        packetId = (<i32>load<u8>(buf + <usize>topicEnd) << 8) | <i32>load<u8>(buf + <usize>topicEnd, 1)
        if (packetId == 0) return finish(out, count, ERR_PACKET_ID_ZERO, pos, 0)
        payloadStart += 2
      }
      if (topicLen == prevTopicLen && memory.compare(buf + <usize>prevTopicStart, buf + <usize>topicStart, <usize>topicLen) == 0) sameTopic = 1
      prevTopicStart = topicStart
      prevTopicLen = topicLen
    }
    store<i32>(rec, <i32>first)
    store<i32>(rec, pos, 4)
    store<i32>(rec, packetEnd, 8)
    store<i32>(rec, topicStart, 12)
    store<i32>(rec, topicEnd, 16)
    store<i32>(rec, packetId, 20)
    store<i32>(rec, payloadStart, 24)
    store<i32>(rec, sameTopic, 28)
    rec += <usize>(RECORD_WORDS << 2)
    count++
    pos = packetEnd
  }
  return finish(out, count, OK, pos, 0)
}

/** Writes `count` PUBACKs for the big-endian u16 ids at `ids` to `out`; returns the bytes written. */
export function encodePubacks(ids: usize, count: i32, out: usize): i32 {
  for (let k = 0; k < count; k++) {
    const id = <u32>load<u16>(ids + (<usize>k << 1))
    const p = out + (<usize>k << 2)
    store<u8>(p, 0x40)
    store<u8>(p, 2, 1)
    store<u8>(p, <u8>(id >> 8), 2)
    store<u8>(p, <u8>id, 3)
  }
  return count << 2
}

/** Writes a PINGRESP to `out`; returns its length. */
export function encodePingresp(out: usize): i32 {
  store<u8>(out, 0xd0)
  store<u8>(out, 0, 1)
  return 2
}
