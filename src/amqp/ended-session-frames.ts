// A disposition or flow for a session the peer has just ended is dropped rather than treated as a
// protocol error that closes the whole connection: rhea clients (the SDKs' 1.x and the Event Hubs
// client's 3.x) write settlements a tick late, so one can follow the client's own `end` on the wire.
// Neither frame carries data; a transfer or attach on an unknown channel stays an error.
import type rhea from 'rhea'

type FrameHandler = (frame: { channel: number }) => void
interface ChannelMap { remote_channel_map: Record<number, unknown> }

const LENIENT = ['on_disposition', 'on_flow'] as const

export function ignoreLateSessionFrames(conn: rhea.Connection, dropped: (kind: string) => void): void {
  const target = conn as unknown as ChannelMap & Record<(typeof LENIENT)[number], FrameHandler>
  for (const name of LENIENT) {
    const original = target[name]
    target[name] = function (this: ChannelMap, frame) {
      if (!this.remote_channel_map[frame.channel]) return dropped(name.slice(3))
      original.call(this, frame)
    }
  }
}
