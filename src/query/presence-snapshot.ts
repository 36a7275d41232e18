// The edge's live facts about devices (connection state, last activity, pending C2D count), copied
// for a query worker, which cannot ask the edge: only devices with something to report are listed.
// A copy of every such device costs time in proportion to the fleet, on the event loop that serves
// sockets, so it is built a chunk at a time across turns, packed chunk by chunk (the worker gets a
// few buffers, not an object per device), and shared by every query that arrived before it began.
import { Packr, Unpackr } from 'msgpackr'
import { NEVER, type PresenceView } from '../registry/device-registry.js'

type Row = [deviceId: string, connected: boolean, since: string, lastActivityTime: string, cloudToDeviceMessageCount: number]

export interface PresenceSnapshot {
  /** msgpackr-packed arrays of rows */
  chunks: Uint8Array[]
}

export interface PresenceSource extends PresenceView {
  /** the ids of devices with a live fact, possibly with repeats */
  presentDeviceIds(): Iterable<string>
}

/** Devices copied per event-loop turn. */
export const SNAPSHOT_CHUNK = 2000

const packr = new Packr({ useRecords: false })

export class PresenceSnapshots {
  /** the build queries wait for; it has not started reading yet, so it sees everything before them */
  private next: Promise<PresenceSnapshot> | undefined

  constructor(private readonly source: PresenceSource, private readonly chunk = SNAPSHOT_CHUNK) {}

  /** A snapshot taken after this call. */
  take(): Promise<PresenceSnapshot> {
    if (this.next) return this.next
    const build = new Promise<void>((r) => setImmediate(r)).then(() => {
      if (this.next === build) this.next = undefined // from here on, a new query needs a newer snapshot
      return this.build()
    })
    this.next = build
    return build
  }

  private async build(): Promise<PresenceSnapshot> {
    const chunks: Uint8Array[] = []
    const seen = new Set<string>()
    let rows: Row[] = []
    for (const id of this.source.presentDeviceIds()) {
      if (seen.has(id)) continue
      seen.add(id)
      const c = this.source.connectionState(id)
      rows.push([id, c.connected, c.since, this.source.lastActivityTime(id), this.source.cloudToDeviceMessageCount(id)])
      if (rows.length >= this.chunk) {
        chunks.push(new Uint8Array(packr.pack(rows)))
        rows = []
        await new Promise((r) => setImmediate(r)) // sockets are served between chunks
      }
    }
    if (rows.length > 0) chunks.push(new Uint8Array(packr.pack(rows)))
    return { chunks }
  }
}

/** The worker's side: the snapshot as a PresenceView. */
export function snapshotView(s: PresenceSnapshot): PresenceView {
  const unpackr = new Unpackr({ useRecords: false })
  const byId = new Map<string, Row>()
  for (const chunk of s.chunks) for (const r of unpackr.unpack(chunk) as Row[]) byId.set(r[0], r)
  return {
    connectionState: (id) => {
      const r = byId.get(id)
      return r ? { connected: r[1], since: r[2] } : { connected: false, since: NEVER }
    },
    lastActivityTime: (id) => byId.get(id)?.[3] ?? NEVER,
    cloudToDeviceMessageCount: (id) => byId.get(id)?.[4] ?? 0,
  }
}
