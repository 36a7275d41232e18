// Avro encoding of storage endpoint batches (routing.md: `avro`, Azure's default, and `avrodeflate`):
// an Avro object container file per blob, whose header (schema, codec, sync marker) is written with
// the blob's first block and whose later blocks are data blocks alone. The sync marker comes from the
// blob's name, so every block of one blob carries the same marker whichever hub run wrote it.
// Records carry the fields of the JSON encoding; the body is the message's bytes.
import { createHash } from 'node:crypto'
import avro from 'avsc'
import type { StoredEvent } from '../src/events/segment-codec.js'
import { messageRecord } from './message-record.js'

export type AvroCodec = 'null' | 'deflate'

/** The record schema (choice: Azure's documented fields; maps of strings, the body as bytes). */
export const MESSAGE_SCHEMA = {
  type: 'record', name: 'Message', namespace: 'Microsoft.Azure.Devices',
  fields: [
    { name: 'EnqueuedTimeUtc', type: 'string' },
    { name: 'Properties', type: { type: 'map', values: 'string' } },
    { name: 'SystemProperties', type: { type: 'map', values: 'string' } },
    { name: 'Body', type: ['null', 'bytes'] },
  ],
} as const

const messageType = avro.Type.forSchema(MESSAGE_SCHEMA as unknown as avro.Schema)
const longType = avro.Type.forSchema('long')
const metadataType = avro.Type.forSchema({ type: 'map', values: 'bytes' })
const MAGIC = Buffer.from([0x4f, 0x62, 0x6a, 0x01]) // "Obj" 1

/** One message as an Avro-encoded record (no framing). */
export function avroRecord(e: StoredEvent): Buffer {
  const r = messageRecord(e)
  const props: Record<string, string> = {}
  for (const [k, v] of Object.entries(r.Properties as Record<string, unknown>)) props[k] = String(v)
  return messageType.toBuffer({
    EnqueuedTimeUtc: r.EnqueuedTimeUtc, Properties: props, SystemProperties: r.SystemProperties,
    Body: Buffer.from(e.b.buffer, e.b.byteOffset, e.b.byteLength),
  })
}

export function syncMarker(blobName: string): Buffer {
  return createHash('sha256').update(blobName).digest().subarray(0, 16)
}

/** The container file's header: magic, metadata (schema and codec), sync marker. */
export function containerHeader(codec: AvroCodec, sync: Buffer): Buffer {
  const metadata = { 'avro.schema': Buffer.from(JSON.stringify(MESSAGE_SCHEMA)), 'avro.codec': Buffer.from(codec) }
  return Buffer.concat([MAGIC, metadataType.toBuffer(metadata), sync])
}

/** What precedes a data block's bytes: its record count and byte length. */
export function blockPrefix(records: number, bytes: number): Buffer {
  return Buffer.concat([longType.toBuffer(records), longType.toBuffer(bytes)])
}
