// A storage endpoint (routing.md "Storage endpoint details"): messages are batched per partition and
// written as files of JSON lines under `{dataDir}/endpoints/{name}/` with Azure's file name format.
// A batch is written when its window (batchFrequencyInSeconds) ends or it reaches
// maxChunkSizeInBytes, and on shutdown. Choices: a batch whose name already exists (two batches in
// one minute) is appended to that file; a window without messages writes no file.
import { appendFile, mkdir } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import type { StorageEndpointDef } from '../src/routing/routing-config.js'
import type { StoredEvent } from '../src/events/segment-codec.js'
import { bodyEncoding, canonicalSystemName } from '../src/routing/route-message.js'

interface Batch { startedAt: number; lines: string[]; bytes: number; timer: NodeJS.Timeout }

const pad = (n: number) => String(n).padStart(2, '0')

/** Azure's file name tokens, in UTC at the batch's start. */
export function storageFileName(format: string, hubName: string, partition: number, at: number): string {
  const d = new Date(at)
  return format.replaceAll('{iothub}', hubName).replaceAll('{partition}', String(partition))
    .replaceAll('{YYYY}', String(d.getUTCFullYear())).replaceAll('{MM}', pad(d.getUTCMonth() + 1)).replaceAll('{DD}', pad(d.getUTCDate()))
    .replaceAll('{HH}', pad(d.getUTCHours())).replaceAll('{mm}', pad(d.getUTCMinutes()))
}

// system properties as Azure's storage records name them (routing keywords)
const RECORD_NAMES: Record<string, string> = {
  messageid: 'messageId', correlationid: 'correlationId', userid: 'userId', contenttype: 'contentType', contentencoding: 'contentEncoding',
  connectiondeviceid: 'connectionDeviceId', connectionauthmethod: 'connectionAuthMethod', connectiondevicegenerationid: 'connectionDeviceGenerationId',
  enqueuedtime: 'enqueuedTime', 'iothub-creation-time-utc': 'iothub-creation-time-utc',
}

/** One message as a storage (and webhook) record: EnqueuedTimeUtc, Properties, SystemProperties, Body. */
export function messageRecord(e: StoredEvent): Record<string, unknown> {
  const system: Record<string, string> = {}
  const canonical = new Map<string, string>()
  for (const [k, v] of Object.entries(e.s)) {
    const c = canonicalSystemName(k)
    canonical.set(c, v)
    system[RECORD_NAMES[c] ?? k] = v
  }
  const buf = Buffer.from(e.b.buffer, e.b.byteOffset, e.b.byteLength)
  // JSON bodies stay JSON when routing could read them (content type JSON, UTF-8); else base64
  let body: unknown = buf.toString('base64')
  if (bodyEncoding(canonical) === 'utf-8') {
    try { body = JSON.parse(buf.toString('utf8')) } catch { /* not JSON after all: base64 */ }
  }
  return { EnqueuedTimeUtc: new Date(e.t).toISOString().replace('Z', '0000Z'), Properties: e.p, SystemProperties: system, Body: body }
}

export class StorageEndpoint {
  private readonly batches = new Map<number, Batch>()
  /** files are written one after another, so batches of one file land in order */
  private chain: Promise<void> = Promise.resolve()
  private readonly root: string

  constructor(readonly def: StorageEndpointDef, dataDir: string, private readonly hubName: string, private readonly onError: (e: Error) => void) {
    this.root = join(dataDir, 'endpoints', def.name)
  }

  add(partition: number, e: StoredEvent): void {
    const line = JSON.stringify(messageRecord(e)) + '\n'
    let b = this.batches.get(partition)
    if (!b) {
      const timer = setTimeout(() => this.flush(partition), this.def.batchFrequencyInSeconds * 1000)
      timer.unref()
      this.batches.set(partition, (b = { startedAt: Date.now(), lines: [], bytes: 0, timer }))
    }
    b.lines.push(line)
    b.bytes += Buffer.byteLength(line)
    if (b.bytes >= this.def.maxChunkSizeInBytes) this.flush(partition)
  }

  private flush(partition: number): void {
    const b = this.batches.get(partition)
    if (!b) return
    this.batches.delete(partition)
    clearTimeout(b.timer)
    const file = join(this.root, storageFileName(this.def.fileNameFormat, this.hubName, partition, b.startedAt))
    this.chain = this.chain
      .then(() => mkdir(dirname(file), { recursive: true }))
      .then(() => appendFile(file, b.lines.join('')))
      .catch((e: Error) => this.onError(e))
  }

  /** Writes every open batch (shutdown, or the endpoint removed). */
  async close(): Promise<void> {
    for (const p of [...this.batches.keys()]) this.flush(p)
    await this.chain
  }
}
