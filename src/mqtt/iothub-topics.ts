// IoT Hub's MQTT topics for twins, direct methods and cloud-to-device messages: parsing what devices
// publish and formatting what the hub publishes (sdk-compat.md §1.3). Pure functions, used by the
// edge and the shards alike.

export const C2D_FILTER_SUFFIX = '/messages/devicebound/#'
export const TWIN_RESPONSE_FILTER = '$iothub/twin/res/#'
export const TWIN_DESIRED_FILTER = '$iothub/twin/PATCH/properties/desired/#'
export const METHODS_FILTER = '$iothub/methods/POST/#'

export function c2dFilter(deviceId: string): string {
  return `devices/${deviceId}${C2D_FILTER_SUFFIX}`
}

export type IotHubRequest =
  | { kind: 'twin-get'; rid: string }
  | { kind: 'twin-patch-reported'; rid: string }
  | { kind: 'method-response'; rid: string; status: number }

/** The `?a=b&c=d` part at the end of a topic, decoded; undefined if it is not URL-encoded correctly. */
export function topicQuery(topic: string): Map<string, string> | undefined {
  const q = topic.indexOf('?')
  const out = new Map<string, string>()
  if (q < 0) return out
  for (const pair of topic.slice(q + 1).split('&')) {
    if (pair === '') continue
    const eq = pair.indexOf('=')
    try {
      out.set(decodeURIComponent(eq < 0 ? pair : pair.slice(0, eq)), eq < 0 ? '' : decodeURIComponent(pair.slice(eq + 1)))
    } catch {
      return undefined
    }
  }
  return out
}

/** What a device asks for on a `$iothub/...` topic, or undefined when the topic is not one IoT Hub accepts. */
export function parseIotHubTopic(topic: string): IotHubRequest | undefined {
  const q = topic.indexOf('?')
  if (q < 0) return undefined
  const path = topic.slice(0, q)
  const rid = topicQuery(topic)?.get('$rid')
  // the hub echoes the rid in its answer's topic: a long one would not fit (SDKs send short numbers or uuids)
  if (!rid || rid.length > MAX_RID_LENGTH) return undefined
  if (path === '$iothub/twin/GET/') return { kind: 'twin-get', rid }
  if (path === '$iothub/twin/PATCH/properties/reported/') return { kind: 'twin-patch-reported', rid }
  const m = /^\$iothub\/methods\/res\/(\d{1,9})\/$/.exec(path)
  if (m) return { kind: 'method-response', rid, status: Number(m[1]) }
  return undefined
}

/** The longest `$rid` accepted (Azure documents none; the SDKs send integers and uuids). */
export const MAX_RID_LENGTH = 128

export const TWIN_RESPONSE_PREFIX = '$iothub/twin/res/'

export function twinResponseTopic(status: number, rid: string, version?: number): string {
  return `${TWIN_RESPONSE_PREFIX}${status}/?$rid=${encodeURIComponent(rid)}${version === undefined ? '' : `&$version=${version}`}`
}

export function desiredPatchTopic(version: number): string {
  return `$iothub/twin/PATCH/properties/desired/?$version=${version}`
}

export function methodRequestTopic(methodName: string, rid: string): string {
  return `$iothub/methods/POST/${methodName}/?$rid=${rid}`
}

export function c2dTopic(deviceId: string, bag: string): string {
  return `devices/${deviceId}/messages/devicebound/${bag}`
}
