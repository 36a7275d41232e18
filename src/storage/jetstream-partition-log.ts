// One partition of the built-in endpoint on NATS JetStream, for cluster mode (issue 21): a stream per
// partition, replicated (3 copies on a 3-node cluster), holding the same segments the LMDB log holds
// (segment-codec.ts), one JetStream message per segment. An append resolves once the stream has
// acknowledged it, that is once a majority of its replicas stored it: the PUBACK a device gets
// after that survives a node's death.
// - Sequence numbers are the partition's own (events, not messages): each message carries its first
//   event's sequence in a header, and the writer that opens the log continues from the last one.
// - One writer at a time: every publish expects the stream's last message to be the one this writer
//   wrote last, so a second writer (a node that lost its lease and does not know it yet) is refused
//   instead of interleaving.
// - Each segment's message id is `{partition}-{first sequence}`: a publish still in flight when its
//   writer gave up and opened the partition again (the stream's expected-sequence check sees only
//   what is committed) and the new writer's segment at that position share it, so the stream keeps
//   one. An ack that says duplicate is a failure, never a success (those bytes were not stored):
//   the writer fails, as on a wrong last sequence, and the caller opens the partition again.
// - A segment is checked against the server's max payload once encoded (senders and framing count
//   too) and split until it fits.
import { headers, nanos, type NatsConnection } from '@nats-io/transport-node'
import { jetstream, jetstreamManager, JetStreamApiError, StorageType, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream'
import { decodeSegment, encodeSegment, nextOffset, segmentSpan, type DecodedSegment, type RawEvent } from '../events/segment-codec.js'
import type { PartitionAppender } from './partition-appender.js'
import { untilAvailable } from './until-available.js'

/** JetStream's error codes for "wrong last sequence" (10164: while another write to the subject is in flight): another writer appended since. */
export const WRONG_LAST_SEQUENCE = [10071, 10164]
const FIRST_SEQUENCE_HEADER = 'Hh-First-Sequence'
/** a segment's cap, as the LMDB log's: JetStream's default max payload is 1 MiB, so bodies stay below it */
export const MAX_SEGMENT_EVENTS = 1000
export const MAX_SEGMENT_BYTES = 768 * 1024

export interface JetStreamLogOptions {
  /** copies of each segment (at most the cluster's node count) */
  replicas: number
  /** how long events are kept */
  retentionMs: number
  /** stream names are `{prefix}_P{partition}`, subjects `{prefix}.p.{partition}` */
  prefix?: string
}

export class JetStreamPartitionLog implements PartitionAppender {
  private nextSequence: number
  private nextByteOffset: number
  private newestTime: number
  /** the stream sequence of this writer's last message: the next publish expects it */
  private lastStreamSequence: number
  /** publishes go one after another (each expects the previous one) */
  private tail: Promise<unknown> = Promise.resolve()
  private failed: Error | undefined
  /** the server's max payload, less room for the headers */
  private readonly maxSegmentBytes: number

  private constructor(readonly id: number, private readonly js: JetStreamClient, private readonly jsm: JetStreamManager,
    readonly stream: string, readonly subject: string, last: { streamSequence: number; nextSequence: number; nextOffset: number; newestTime: number }, maxPayload: number) {
    this.lastStreamSequence = last.streamSequence
    this.nextSequence = last.nextSequence
    this.nextByteOffset = last.nextOffset
    this.newestTime = last.newestTime
    this.maxSegmentBytes = maxPayload - 1024
  }

  /** Creates the partition's stream if need be, and continues after its last segment. */
  static async open(nc: NatsConnection, partition: number, o: JetStreamLogOptions): Promise<JetStreamPartitionLog> {
    const prefix = o.prefix ?? 'HH'
    const stream = `${prefix}_P${partition}`
    const subject = `${prefix}.p.${partition}`
    return untilAvailable(`partition ${partition}`, async () => {
      const jsm = await jetstreamManager(nc)
      try {
        await jsm.streams.info(stream)
      } catch (e) {
        if (!(e instanceof JetStreamApiError) || e.code !== 10059) throw e // 10059: stream not found
        await jsm.streams.add({
          name: stream, subjects: [subject], num_replicas: o.replicas, storage: StorageType.File,
          max_age: nanos(o.retentionMs), duplicate_window: nanos(120_000),
        })
      }
      const last = await jsm.streams.getMessage(stream, { last_by_subj: subject })
      const position = { streamSequence: 0, nextSequence: 0, nextOffset: 0, newestTime: Number.NEGATIVE_INFINITY }
      if (last) {
        const first = Number(last.header.get(FIRST_SEQUENCE_HEADER))
        if (!Number.isSafeInteger(first) || first < 0) throw new Error(`partition ${partition}: the last message of ${stream} is not a segment (no first sequence)`)
        const span = segmentSpan(last.data)
        Object.assign(position, { streamSequence: last.seq, nextSequence: first + span.count, nextOffset: span.endOffset, newestTime: span.maxTime })
      }
      return new JetStreamPartitionLog(partition, jetstream(nc), jsm, stream, subject, position, nc.info?.max_payload ?? 1024 * 1024)
    })
  }

  get lastSequenceNumber(): number { return this.nextSequence - 1 }
  get next(): { sequence: number; offset: number } { return { sequence: this.nextSequence, offset: this.nextByteOffset } }

  /**
   * Appends events as one or more segments; resolves once the stream acknowledged every one. After a
   * failure (another writer, the cluster unreachable past its timeout) every later append fails too:
   * the partition must be opened again, from what the stream holds.
   */
  append(events: RawEvent[]): Promise<boolean> {
    if (this.failed) return Promise.reject(this.failed)
    const segments: { firstSequence: number; bytes: Uint8Array }[] = []
    let start = 0
    while (start < events.length) {
      const firstOffset = this.nextByteOffset
      let size = 0
      let end = start
      for (; end < events.length && end - start < MAX_SEGMENT_EVENTS; end++) {
        let e = events[end]!
        if (end > start && size + e.body.length + e.bag.length > MAX_SEGMENT_BYTES) break
        if (e.t < this.newestTime) events[end] = e = { ...e, t: this.newestTime }
        else this.newestTime = e.t
        size += e.body.length + e.bag.length
      }
      let bytes = encodeSegment(firstOffset, start === 0 && end === events.length ? events : events.slice(start, end))
      // senders, framing and headers count against the server's max payload too: halve until it fits
      while (bytes.length > this.maxSegmentBytes && end - start > 1) {
        end = start + Math.ceil((end - start) / 2)
        bytes = encodeSegment(firstOffset, events.slice(start, end))
      }
      this.nextByteOffset = firstOffset
      for (let i = start; i < end; i++) this.nextByteOffset = nextOffset(this.nextByteOffset, events[i]!.body.length)
      segments.push({ firstSequence: this.nextSequence, bytes })
      this.nextSequence += end - start
      start = end
    }
    const done = this.tail.then(async () => {
      for (const s of segments) await this.publish(s.firstSequence, s.bytes)
      return true
    })
    // the next append waits for this one, failed or not (a failure fails it by itself)
    this.tail = done.catch(() => {})
    return done
  }

  private async publish(firstSequence: number, bytes: Uint8Array): Promise<void> {
    if (this.failed) throw this.failed
    const h = headers()
    h.set(FIRST_SEQUENCE_HEADER, String(firstSequence))
    try {
      const ack = await this.js.publish(this.subject, bytes, {
        msgID: `${this.id}-${firstSequence}`, headers: h, expect: { lastSubjectSequence: this.lastStreamSequence }, timeout: 10_000,
      })
      if (ack.duplicate) throw new Error(`partition ${this.id}: another writer appended to ${this.stream} (segment ${firstSequence} was taken for a duplicate, not stored)`)
      this.lastStreamSequence = ack.seq
    } catch (e) {
      this.failed = e instanceof JetStreamApiError && WRONG_LAST_SEQUENCE.includes(e.code)
        ? new Error(`partition ${this.id}: another writer appended to ${this.stream}`)
        : (e as Error)
      throw this.failed
    }
  }

  /**
   * The segments from the one holding event `sequence` on, at most `max`. Stream messages are in
   * the order of their first sequence (one writer, in order), so the start is a binary search over
   * stream sequences: O(log n) lookups, never a walk over the partition.
   */
  async readFrom(sequence: number, max = 16): Promise<DecodedSegment[]> {
    const { state } = await this.jsm.streams.info(this.stream)
    if (state.messages === 0) return []
    const firstOf = async (seq: number) => {
      const m = await this.jsm.streams.getMessage(this.stream, { seq })
      return m ? { m, first: Number(m.header.get(FIRST_SEQUENCE_HEADER)) } : undefined
    }
    let lo = state.first_seq
    let hi = state.last_seq
    // the last stream message whose first event is at or before `sequence` (or the first one)
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2)
      const at = await firstOf(mid)
      if (at && at.first <= sequence) lo = mid
      else hi = mid - 1
    }
    const out: DecodedSegment[] = []
    for (let seq = lo; seq <= state.last_seq && out.length < max; seq++) {
      const at = await firstOf(seq)
      if (!at || at.first + segmentSpan(at.m.data).count <= sequence) continue
      out.push(decodeSegment(at.first, at.m.data))
    }
    return out
  }
}
