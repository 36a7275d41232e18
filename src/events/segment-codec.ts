// A partition is stored as segments: one LMDB entry per commit, keyed by the sequence number of its
// first event. One put per commit instead of one per message is what lets a commit carry hundreds of
// messages for the price of a memcpy (see bench/RESULTS.md).
//
// The writer stores each message as it arrived (raw property bag, body) plus a per-segment table of
// the sending devices; system properties are assembled when the event is read. Readers are fewer
// than writers, and this keeps the ingest path free of object building.
import { Packr } from 'msgpackr'
import { parsePropertyBag } from '../mqtt/property-bag.js'

/** The device a message came from, as stamped on it. */
export interface Sender {
  deviceId: string
  generationId: string
  authMethod: string
  /** IoT Plug and Play model announced at connect: stamped as `dt-dataschema` */
  modelId?: string
  /** the module that sent it: stamped as `iothub-connection-module-id` */
  moduleId?: string
}

type SenderRow = [deviceId: string, generationId: string, authMethod: string, modelId?: string, moduleId?: string]

/** Devices' rows keep their three (or four) fields; a module's adds a fifth. */
function senderRow(s: Sender): SenderRow {
  if (s.moduleId) return [s.deviceId, s.generationId, s.authMethod, s.modelId ?? '', s.moduleId]
  return s.modelId ? [s.deviceId, s.generationId, s.authMethod, s.modelId] : [s.deviceId, s.generationId, s.authMethod]
}

function senderOf([deviceId, generationId, authMethod, modelId, moduleId]: SenderRow): Sender {
  const s: Sender = { deviceId, generationId, authMethod }
  if (modelId) s.modelId = modelId
  if (moduleId) s.moduleId = moduleId
  return s
}

/** A message as the shard stores it. */
export interface RawEvent {
  /** enqueued time, ms since the epoch */
  t: number
  sender: Sender
  /** the URL-encoded property bag from the topic */
  bag: string
  /** properties the hub adds (mqtt-retain, iothub-MessageType) */
  extra: Record<string, string> | null
  body: Uint8Array
  /** `iothub-message-source` when not telemetry (routed twin change, lifecycle, connection events) */
  src?: string
}

/** A message as readers see it. */
export interface StoredEvent {
  t: number
  /** system properties */
  s: Record<string, string>
  /** application properties */
  p: Record<string, string>
  b: Uint8Array
}

export interface DecodedSegment {
  firstSequence: number
  /** byte offset (as Event Hubs counts it) of each event */
  offsets: number[]
  events: StoredEvent[]
}

type Row = [t: number, sender: number, bag: string, extra: Record<string, string> | null, body: Uint8Array, src?: string]

const packr = new Packr({ useRecords: false })

/** Event Hubs offsets grow by the stored size; ours by body length + 1, monotonic as required. */
export function nextOffset(offset: number, bodyLength: number): number {
  return offset + bodyLength + 1
}

export function encodeSegment(firstOffset: number, events: RawEvent[]): Uint8Array {
  const senders: SenderRow[] = []
  const index = new Map<Sender, number>()
  const rows: Row[] = new Array(events.length)
  for (let i = 0; i < events.length; i++) {
    const e = events[i]!
    let s = index.get(e.sender)
    if (s === undefined) {
      index.set(e.sender, (s = senders.length))
      senders.push(senderRow(e.sender))
    }
    // telemetry rows keep their old five fields; only events carry a sixth
    rows[i] = e.src === undefined ? [e.t, s, e.bag, e.extra, e.body] : [e.t, s, e.bag, e.extra, e.body, e.src]
  }
  // copy out of msgpackr's reusable buffer: LMDB keeps the bytes until the commit
  return new Uint8Array(packr.pack([firstOffset, senders, rows]))
}

/** A stored message as readers see it: system properties assembled from the bag and the sender. */
export function toStoredEvent(t: number, sender: Sender, bag: string, extra: Record<string, string> | null, b: Uint8Array, source = 'Telemetry'): StoredEvent {
  // the bag was validated on the way in
  const { system, properties } = parsePropertyBag(bag)
  system['iothub-connection-device-id'] = sender.deviceId
  if (sender.moduleId) system['iothub-connection-module-id'] = sender.moduleId
  system['iothub-connection-auth-method'] = sender.authMethod
  system['iothub-connection-auth-generation-id'] = sender.generationId
  system['iothub-enqueuedtime'] = new Date(t).toISOString()
  system['iothub-message-source'] = source
  if (sender.modelId) system['dt-dataschema'] = sender.modelId
  return { t, s: system, p: extra ? Object.assign(properties, extra) : properties, b }
}

export function decodeSegment(firstSequence: number, bytes: Uint8Array): DecodedSegment {
  const [firstOffset, senders, rows] = packr.unpack(bytes) as [number, SenderRow[], Row[]]
  const events: StoredEvent[] = new Array(rows.length)
  const offsets: number[] = new Array(rows.length)
  const senderObjects = senders.map(senderOf)
  let offset = firstOffset
  for (let i = 0; i < rows.length; i++) {
    const [t, senderIndex, bag, extra, b, src] = rows[i]!
    events[i] = toStoredEvent(t, senderObjects[senderIndex]!, bag, extra, b, src)
    offsets[i] = offset
    offset = nextOffset(offset, b.length)
  }
  return { firstSequence, offsets, events }
}

/** What the writer and the index need of a stored segment, without building its events. */
export interface SegmentSpan {
  count: number
  firstTime: number
  lastTime: number
  /** the latest enqueued time in it: segments written before times were clamped may go back */
  maxTime: number
  firstOffset: number
  lastOffset: number
  /** the offset the next segment starts at */
  endOffset: number
}

export function segmentSpan(bytes: Uint8Array): SegmentSpan {
  const [firstOffset, , rows] = packr.unpack(bytes) as [number, unknown, Row[]]
  let offset = firstOffset
  let lastOffset = firstOffset
  let maxTime = Number.NEGATIVE_INFINITY
  for (const r of rows) {
    lastOffset = offset
    offset = nextOffset(offset, r[4].length)
    if (r[0] > maxTime) maxTime = r[0]
  }
  const n = rows.length
  return { count: n, firstTime: n ? rows[0]![0] : 0, lastTime: n ? rows[n - 1]![0] : 0, maxTime, firstOffset, lastOffset, endOffset: offset }
}
