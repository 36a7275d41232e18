// An MqttTransport without a socket, for edge tests: it records what was written, whether reading is
// paused, and lets the test set how much is still buffered and fire drain.
import type { MqttTransport } from '../../src/mqtt/transport.js'

export interface FakeTransport extends MqttTransport {
  written: Buffer[]
  paused: boolean
  pauses: number
  resumes: number
  ended: boolean
  /** what the "network" has not taken yet; the test sets it */
  buffered: number
  drain(): void
}

export function fakeTransport(kind: MqttTransport['kind'] = 'tcp', remoteAddress = '127.0.0.1'): FakeTransport {
  let onDrain: () => void = () => {}
  const t: FakeTransport = {
    kind, remoteAddress, pausable: kind !== 'wss', written: [], paused: false, pauses: 0, resumes: 0, ended: false, buffered: 0,
    get bufferedBytes() { return t.buffered },
    write: (b) => { t.written.push(b) },
    cork: () => {}, uncork: () => {},
    pause: () => { t.paused = true; t.pauses++ },
    resume: () => { t.paused = false; t.resumes++ },
    onDrain: (listener) => { onDrain = listener },
    end: () => { t.ended = true },
    drain: () => onDrain(),
  }
  return t
}
