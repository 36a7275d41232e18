// Two kinds of session frame rhea mishandles, made safe before it sees them:
// - a disposition or flow for a session the peer has just ended is dropped rather than treated as a
//   protocol error that closes the whole connection: rhea clients (the SDKs' 1.x and the Event Hubs
//   client's 3.x) write settlements a tick late, so one can follow the client's own `end` on the
//   wire. Neither frame carries data; a transfer or attach on an unknown channel stays an error.
// - a disposition's range is cut to what can be outstanding: rhea visits every id from `first` to
//   `last`, and one 100-byte frame saying 0..2^32 held the event loop for half a minute, token or
//   none. A session never has more than its ring of 2,048 deliveries unsettled; ids that are not
//   uint32 numbers drop the frame.
import type rhea from 'rhea'

interface SessionFrame { channel: number; performative?: { first?: number; last?: number | null } }
type FrameHandler = (frame: SessionFrame) => void
interface ChannelMap { remote_channel_map: Record<number, unknown> }

/** rhea's per-session delivery ring (session.js) */
export const MAX_DISPOSITION_RANGE = 2048

function isDeliveryId(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffffffff
}

export function ignoreLateSessionFrames(conn: rhea.Connection, dropped: (kind: string) => void): void {
  const target = conn as unknown as ChannelMap & Record<'on_disposition' | 'on_flow', FrameHandler>
  const onDisposition = target.on_disposition
  const onFlow = target.on_flow
  target.on_disposition = function (this: ChannelMap, frame) {
    if (!this.remote_channel_map[frame.channel]) return dropped('disposition')
    const p = frame.performative
    // rhea takes each field in whatever type the peer encoded it: a string, a double of 2^53 or
    // -Infinity as `last` made its loop endless. Delivery ids are uint (RFC 1982 numbers).
    if (!p || !isDeliveryId(p.first) || (p.last !== undefined && p.last !== null && !isDeliveryId(p.last))) return dropped('disposition malformed')
    if (typeof p.last === 'number' && p.last - p.first! > MAX_DISPOSITION_RANGE) {
      p.last = p.first! + MAX_DISPOSITION_RANGE
      dropped('disposition range')
    }
    onDisposition.call(this, frame)
  }
  target.on_flow = function (this: ChannelMap, frame) {
    if (!this.remote_channel_map[frame.channel]) return dropped('flow')
    onFlow.call(this, frame)
  }
}
