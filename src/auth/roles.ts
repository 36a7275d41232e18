// Role-based access for back ends, as Azure's built-in roles define it (auth.md "Entra ID"): a role
// grants data actions (`Microsoft.Devices/IotHubs/...`, `*` a wildcard) on the data plane, or actions
// on the control plane (ARM's Owner and Contributor). Every service route and AMQP entity names the
// data action it needs beside the SAS right, in the same table.
import type { Right } from './policies.js'

/** The IoT Hub data actions a route or link can need (the `Microsoft.Devices/IotHubs/` prefix left off). */
export type DataAction =
  | 'devices/read' | 'devices/write' | 'devices/delete'
  | 'twins/read' | 'twins/write'
  | 'jobs/read' | 'jobs/write' | 'jobs/delete'
  | 'cloudToDeviceMessages/send/action' | 'cloudToDeviceMessages/feedback/action' | 'cloudToDeviceMessages/queue/purge/action'
  | 'directMethods/invoke/action' | 'fileUpload/notifications/action' | 'statistics/read'
  | 'configurations/read' | 'configurations/write' | 'configurations/delete'
  | 'configurations/applyToEdgeDevice/action' | 'configurations/testQueries/action'

/**
 * What a bearer token must carry for a route: a data action; `control-plane`, hub configuration
 * (ARM's `Microsoft.Devices/IotHubs/write`); or `sas-only`, the built-in Event Hubs-compatible
 * endpoint, which in Azure accepts shared access signatures only. Several data actions: all of
 * them (bulk registry operations need devices/write and devices/delete).
 */
export type RoleNeed = DataAction | 'control-plane' | 'sas-only' | readonly DataAction[]

/** What an AMQP entity (or a route) needs: the SAS right beside the role's need, in one row. */
export interface AccessNeed {
  right: Right
  role: RoleNeed
}

export const DATA_ACTION_PREFIX = 'Microsoft.Devices/IotHubs/'
const CONTROL_PLANE_ACTION = 'Microsoft.Devices/IotHubs/write'

export interface RoleDefinition {
  name: string
  id: string
  /** control-plane actions */
  actions: string[]
  dataActions: string[]
}

/** Azure's built-in roles for IoT Hub, and the two ARM roles that manage a hub's configuration. */
export const ROLES: readonly RoleDefinition[] = [
  { name: 'IoT Hub Data Contributor', id: '4fc6c259-987e-4a07-842e-c321cc9d413f', actions: [], dataActions: ['Microsoft.Devices/IotHubs/*'] },
  {
    name: 'IoT Hub Data Reader', id: 'b447c946-2db7-41ec-983d-d8bf3b1c77e3', actions: [],
    dataActions: ['Microsoft.Devices/IotHubs/*/read', 'Microsoft.Devices/IotHubs/fileUpload/notifications/action'],
  },
  { name: 'IoT Hub Registry Contributor', id: '4ea46cd5-c1b2-4a8e-910b-273211f9ce47', actions: [], dataActions: ['Microsoft.Devices/IotHubs/devices/*'] },
  { name: 'IoT Hub Twin Contributor', id: '494bdba2-168f-4f31-a0a1-191d2f7c028c', actions: [], dataActions: ['Microsoft.Devices/IotHubs/twins/*'] },
  { name: 'Owner', id: '8e3af657-a8ff-443c-a75c-2fe8c4bcb635', actions: ['*'], dataActions: [] },
  { name: 'Contributor', id: 'b24988ac-6180-42a0-ab88-20f7382dd24c', actions: ['*'], dataActions: [] },
]

/** A role by its name (case-insensitive) or its definition id; undefined for one the hub does not know. */
export function findRole(nameOrId: string): RoleDefinition | undefined {
  const key = nameOrId.trim().toLowerCase()
  return ROLES.find((r) => r.name.toLowerCase() === key || r.id === key)
}

/** Azure's action wildcard: `*` matches any run of characters, `/` included; case-insensitive. */
function matches(pattern: string, action: string): boolean {
  const re = new RegExp(`^${pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`, 'i')
  return re.test(action)
}

/** Whether any of the roles allows what a route or link needs. */
export function rolesAllow(roles: readonly RoleDefinition[], need: RoleNeed): boolean {
  if (typeof need !== 'string') return need.every((n) => rolesAllow(roles, n))
  if (need === 'sas-only') return false
  if (need === 'control-plane') return roles.some((r) => r.actions.some((a) => matches(a, CONTROL_PLANE_ACTION)))
  const action = DATA_ACTION_PREFIX + need
  return roles.some((r) => r.dataActions.some((a) => matches(a, action)))
}
