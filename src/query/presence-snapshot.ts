// The edge's live facts about devices (connection state, last activity, pending C2D count), copied
// for a query worker, which cannot ask the edge: only devices with something to report are listed.
import { NEVER, type PresenceView } from '../registry/device-registry.js'

export interface PresenceSnapshot {
  /** [deviceId, connected, since, lastActivityTime, cloudToDeviceMessageCount] */
  rows: [string, boolean, string, string, number][]
}

export function takeSnapshot(ids: Iterable<string>, view: PresenceView): PresenceSnapshot {
  const rows: PresenceSnapshot['rows'] = []
  for (const id of ids) {
    const c = view.connectionState(id)
    rows.push([id, c.connected, c.since, view.lastActivityTime(id), view.cloudToDeviceMessageCount(id)])
  }
  return { rows }
}

export function snapshotView(s: PresenceSnapshot): PresenceView {
  const byId = new Map(s.rows.map((r) => [r[0], r]))
  return {
    connectionState: (id) => {
      const r = byId.get(id)
      return r ? { connected: r[1], since: r[2] } : { connected: false, since: NEVER }
    },
    lastActivityTime: (id) => byId.get(id)?.[3] ?? NEVER,
    cloudToDeviceMessageCount: (id) => byId.get(id)?.[4] ?? 0,
  }
}
