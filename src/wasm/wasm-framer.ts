// Drop-in for MqttFramer (src/mqtt/framer.ts) with the framing done in WASM: JS copies each read
// into the module's memory, one call frames every complete packet in it, and JS only turns the
// resulting offsets into the handler's topic string and payload subarray.
import { FrameError, type FrameHandler } from '../mqtt/framer.js'
import { memoryBytes, memoryGeneration, ScratchRegion, wasm } from './hyperhub-wasm.js'

const HEADER_WORDS = 4
const RECORD_WORDS = 8
const MAX_RECORDS = 512
const PUBLISH = 3

const ERROR_MESSAGES: Record<number, string> = {
  1: 'malformed remaining length',
  2: 'packet exceeds the size limit',
  3: 'reserved header flags are wrong for the packet type',
  4: 'PUBLISH with QoS 3',
  5: 'PUBLISH with packet id 0',
  6: 'PUBLISH topic overruns the packet',
  7: 'PUBLISH without packet id',
  8: 'reserved packet type',
}

/** A FrameError that also says which rule the input broke (the codes of asm/mqtt-framer.ts). */
export class WasmFrameError extends FrameError {
  constructor(readonly code: number, maxPacketBytes: number) {
    super(code === 2 ? `packet exceeds the ${maxPacketBytes}-byte limit` : ERROR_MESSAGES[code] ?? `framing error ${code}`)
  }
}

// Shared by every framer of this thread: push() is synchronous, so one region serves all. The
// handler may re-enter (push on another connection, a SAS check): `framingEpoch` tells the outer
// call its record table was overwritten, and it re-frames from its own JS buffer.
const records = new ScratchRegion((HEADER_WORDS + MAX_RECORDS * RECORD_WORDS) * 4)
const input = new ScratchRegion(64 * 1024)
let framingEpoch = 0
let table = new Int32Array(memoryBytes.buffer, records.ptr, HEADER_WORDS + MAX_RECORDS * RECORD_WORDS)
let tableGeneration = memoryGeneration

export class WasmMqttFramer {
  /** Chunks holding the start of an unfinished packet. */
  private pending: Buffer[] = []
  private pendingBytes = 0
  /** Total bytes that unfinished packet needs (0: its header is incomplete). */
  private pendingNeed = 0
  private failure: FrameError | null = null

  constructor(private readonly maxPacketBytes: number) {}

  /**
   * Feeds bytes; calls the handler for each complete packet, in order. Throws FrameError on
   * malformed input, after delivering the packets before it; the framer then stays failed.
   * If the handler throws, the packets after that one stay pending for the next push.
   */
  push(chunk: Buffer, handler: FrameHandler): void {
    if (this.failure) throw this.failure
    if (chunk.length === 0) return
    let buf = chunk
    if (this.pendingBytes > 0) {
      this.pending.push(chunk)
      this.pendingBytes += chunk.length
      // a large packet arriving in many reads is framed once, when it is whole
      if (this.pendingNeed > this.pendingBytes) return
      buf = Buffer.concat(this.pending, this.pendingBytes)
      this.clearPending()
    }
    this.frame(buf, handler)
  }

  private clearPending(): void {
    this.pending = []
    this.pendingBytes = 0
    this.pendingNeed = 0
  }

  private keep(buf: Buffer, from: number, need: number): void {
    if (from >= buf.length) return
    this.pending = [from === 0 ? buf : buf.subarray(from)]
    this.pendingBytes = buf.length - from
    this.pendingNeed = need
  }

  private frame(buf: Buffer, handler: FrameHandler): void {
    let base = 0 // start in buf of the bytes not yet handed to the handler
    try {
      while (base < buf.length) {
        const windowEnd = Math.min(buf.length, base + input.capacity)
        const epoch = ++framingEpoch
        buf.copy(memoryBytes, input.ptr, base, windowEnd)
        const count = wasm.frameMqtt(input.ptr, windowEnd - base, this.maxPacketBytes, records.ptr, MAX_RECORDS)
        if (tableGeneration !== memoryGeneration) {
          table = new Int32Array(memoryBytes.buffer, records.ptr, HEADER_WORDS + MAX_RECORDS * RECORD_WORDS)
          tableGeneration = memoryGeneration
        }
        const status = table[1]!, consumed = table[2]!, needed = table[3]!
        const windowBase = base
        let topic = ''
        for (let r = 0, w = HEADER_WORDS; r < count; r++, w += RECORD_WORDS) {
          // read the whole record before the handler runs: it may overwrite the table
          const first = table[w]!, start = windowBase + table[w + 1]!, end = windowBase + table[w + 2]!
          base = end // a packet counts as delivered even if its handler throws
          if (first >> 4 === PUBLISH) {
            // equal topic bytes in this read: reuse the string (strings are immutable, so this is invisible)
            if (table[w + 7] !== 1) topic = buf.toString('utf8', windowBase + table[w + 3]!, windowBase + table[w + 4]!)
            const packetId = table[w + 5]!
            const payload = buf.subarray(windowBase + table[w + 6]!, end)
            handler.publish(topic, payload, (first >> 1) & 3, packetId, (first & 1) === 1, (first & 8) === 8)
          } else {
            handler.other(first >> 4, buf.subarray(start, end))
          }
          if (epoch !== framingEpoch) break // re-entered: the table is stale, frame again from `base`
        }
        if (epoch !== framingEpoch || count === MAX_RECORDS) continue
        if (status !== 0) {
          this.failure = new WasmFrameError(status, this.maxPacketBytes)
          throw this.failure
        }
        base = windowBase + consumed
        if (windowEnd < buf.length) {
          // the window ended before buf did: frame on from `base`, with room for a whole packet
          if (consumed === 0) input.ensure(needed > 0 ? needed : input.capacity * 2)
          continue
        }
        this.keep(buf, base, needed)
        return
      }
    } catch (e) {
      if (this.failure) this.clearPending()
      else this.keep(buf, base, 0) // a handler threw: what it was not given waits for the next push
      throw e
    }
  }
}
