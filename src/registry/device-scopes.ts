// Parent and child relationships of IoT Edge gateways (identity-registry.md): an edge device gets a
// scope of its own, generated and immutable; a child (a leaf device, or an edge device nested below
// another) names its parent edge's scope in `parentScopes` (one parent), and a leaf also carries it
// as its `deviceScope`, as older clients set only that. A scope that names no edge device, a second
// parent, or a parent below the device itself is refused with 400028 InvalidDeviceScope.
import { HubError } from '../rest/hub-error.js'

export interface Scoped {
  deviceId: string
  capabilities: { iotEdge: boolean }
  deviceScope?: string
  parentScopes?: string[]
}

/** The scope Azure gives an edge device: its id and generation. */
export function edgeScopeOf(deviceId: string, generationId: string): string {
  return `ms-azure-iot-edge://${deviceId}-${generationId}`
}

function invalid(message: string): HubError {
  return new HubError(400028, message)
}

/**
 * The device's scope fields from a PUT body. `edgeByScope` finds the edge device of a scope;
 * `parentOf` an edge device's parent edge, to refuse a cycle.
 */
export function scopesFrom(
  body: Record<string, unknown>, deviceId: string, generationId: string, iotEdge: boolean, existing: Scoped | undefined,
  edgeByScope: (scope: string) => Scoped | undefined,
): Pick<Scoped, 'deviceScope' | 'parentScopes'> {
  const givenScope = body.deviceScope
  const givenParents = body.parentScopes
  if (givenScope !== undefined && givenScope !== null && typeof givenScope !== 'string') throw invalid('deviceScope must be a string')
  if (givenParents !== undefined && givenParents !== null && (!Array.isArray(givenParents) || givenParents.some((p) => typeof p !== 'string'))) {
    throw invalid('parentScopes must be an array of scope strings')
  }
  const parents = ((givenParents as string[] | null | undefined) ?? []).filter((p) => p !== '')
  const scope = typeof givenScope === 'string' && givenScope !== '' ? givenScope : undefined
  if (iotEdge) {
    // its own scope: generated once, never changed by a caller
    const own = existing?.capabilities.iotEdge && existing.deviceScope ? existing.deviceScope : edgeScopeOf(deviceId, generationId)
    if (scope !== undefined && scope !== own) throw invalid(`the deviceScope of edge device ${deviceId} is ${own}; it cannot be changed`)
    return { deviceScope: own, parentScopes: checkParents(parents, deviceId, own, edgeByScope) }
  }
  // a leaf: its parent in parentScopes, and the same scope as its deviceScope (either may be given alone)
  if (scope !== undefined && parents.length > 0 && parents[0] !== scope) throw invalid('deviceScope and parentScopes name different parents')
  const parent = parents[0] ?? scope
  if (parent === undefined) return {}
  const checked = checkParents([parent, ...parents.slice(1)], deviceId, undefined, edgeByScope)
  return { deviceScope: parent, parentScopes: checked }
}

function checkParents(parents: string[], deviceId: string, ownScope: string | undefined, edgeByScope: (scope: string) => Scoped | undefined): string[] {
  if (parents.length > 1) throw invalid('a device has at most one parent: parentScopes holds one scope')
  if (parents.length === 0) return []
  const parent = edgeByScope(parents[0]!)
  if (!parent) throw invalid(`no edge device has the scope ${parents[0]}`)
  // a parent below this device would make a cycle; the walk is bounded by the chain's length
  const seen = new Set<string>()
  for (let at: Scoped | undefined = parent; at; at = at.parentScopes?.[0] ? edgeByScope(at.parentScopes[0]) : undefined) {
    if (at.deviceId === deviceId || (ownScope !== undefined && at.deviceScope === ownScope)) throw invalid(`edge device ${parent.deviceId} is ${deviceId} or below it: it cannot be its parent`)
    if (seen.has(at.deviceId)) break
    seen.add(at.deviceId)
  }
  return [parents[0]!]
}
