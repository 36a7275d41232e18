// The addresses of a device's AMQP links (c2d-messaging.md, sdk-compat.md): the SDKs attach both
// directions of twins and methods to one address each, so a link is known by its address and role.
import type { Right } from '../auth/policies.js'

/** What a device link is for. `role` is the hub's side: it receives on a client's sender. */
export type DeviceLinkKind =
  | 'telemetry' // hub receives /devices/{id}/messages/events
  | 'c2d' // hub sends /devices/{id}/messages/devicebound
  | 'twin-requests' // hub receives /devices/{id}/twin
  | 'twin-answers' // hub sends /devices/{id}/twin
  | 'method-requests' // hub sends /devices/{id}/methods/devicebound
  | 'method-answers' // hub receives /devices/{id}/methods/devicebound

/** The right a token needs for each device link (the rights tests enumerate this table). */
export const DEVICE_LINK_RIGHTS = {
  'telemetry': 'DeviceConnect', 'c2d': 'DeviceConnect', 'twin-requests': 'DeviceConnect', 'twin-answers': 'DeviceConnect',
  'method-requests': 'DeviceConnect', 'method-answers': 'DeviceConnect',
} as const satisfies Record<DeviceLinkKind, Right>

export interface DeviceLinkAddress {
  /** URL-decoded (as .NET's SDK encodes ids in addresses) */
  deviceId: string
  /** as written (Node's SDK puts ids in addresses unencoded, and an id may hold `%`) */
  rawDeviceId: string
  /** set for the module forms (/devices/{id}/modules/{module}/...), URL-decoded */
  moduleId?: string
  /** the module id as written (as with the device id, the Node SDK does not encode it) */
  rawModuleId?: string
  kind: DeviceLinkKind | undefined
}

const PATTERN = /^\/?devices\/([^/]+)(?:\/modules\/([^/]+))?(\/.*)?$/i

const BY_PATH: Record<string, { hubReceives?: DeviceLinkKind; hubSends?: DeviceLinkKind }> = {
  '/messages/events': { hubReceives: 'telemetry' },
  '/messages/devicebound': { hubSends: 'c2d' },
  '/twin': { hubReceives: 'twin-requests', hubSends: 'twin-answers' },
  '/methods/devicebound': { hubReceives: 'method-answers', hubSends: 'method-requests' },
}

/** A device link's parts, or undefined when the address is not under /devices/. `kind` is undefined for an unknown entity. */
export function parseDeviceAddress(address: string, hubReceives: boolean): DeviceLinkAddress | undefined {
  const m = PATTERN.exec(address)
  if (!m) return undefined
  let deviceId: string, moduleId: string | undefined
  try {
    deviceId = decodeURIComponent(m[1]!)
    moduleId = m[2] === undefined ? undefined : decodeURIComponent(m[2])
  } catch {
    return { deviceId: m[1]!, rawDeviceId: m[1]!, kind: undefined }
  }
  const entry = Object.hasOwn(BY_PATH, m[3] ?? '') ? BY_PATH[m[3]!] : undefined
  return { deviceId, rawDeviceId: m[1]!, ...(moduleId !== undefined ? { moduleId, rawModuleId: m[2]! } : {}), kind: hubReceives ? entry?.hubReceives : entry?.hubSends }
}

/** An audience as the device SDK sends it (`host%2Fdevices%2Fid`, URL-encoded) or as others do (plain). */
export function decodedAudience(audience: string): string | undefined {
  if (audience.includes('/') || !/%2f/i.test(audience)) return audience
  try { return decodeURIComponent(audience) } catch { return undefined }
}

/** The device (and module) a put-token's audience names (`{host}/devices/{id}[/modules/{m}]`), or undefined. */
export function deviceOfAudience(audience: string): { deviceId: string; moduleId?: string } | undefined {
  const decoded = decodedAudience(audience)
  if (decoded === undefined) return undefined
  const path = decoded.replace(/^[a-z]+:\/\//i, '').split('/').slice(1).filter(Boolean)
  if (path[0]?.toLowerCase() !== 'devices' || path.length < 2) return undefined
  if (path.length === 2) return { deviceId: path[1]! }
  if (path.length === 4 && path[2]!.toLowerCase() === 'modules') return { deviceId: path[1]!, moduleId: path[3]! }
  return undefined
}
