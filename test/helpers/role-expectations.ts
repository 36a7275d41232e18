// What each built-in role may do, written out from Azure's role definitions (auth.md "Entra ID"),
// not computed by the hub's matcher: the rights tests compare the hub against this.
import type { RoleNeed } from '../../src/auth/roles.js'

const READS: RoleNeed[] = ['devices/read', 'twins/read', 'jobs/read', 'statistics/read', 'configurations/read']

const ALLOWED: Record<string, RoleNeed[] | 'every data action'> = {
  'IoT Hub Data Contributor': 'every data action',
  'IoT Hub Data Reader': [...READS, 'fileUpload/notifications/action'],
  'IoT Hub Registry Contributor': ['devices/read', 'devices/write', 'devices/delete'],
  'IoT Hub Twin Contributor': ['twins/read', 'twins/write'],
  'Owner': ['control-plane'],
  'Contributor': ['control-plane'],
}

/** Whether Azure lets a principal with this one role do what `need` names. */
export function roleMayDo(roleName: string, need: RoleNeed): boolean {
  if (typeof need !== 'string') return need.every((n) => roleMayDo(roleName, n))
  const allowed = ALLOWED[roleName]
  if (!allowed) throw new Error(`no expectation for role ${roleName}`)
  if (need === 'sas-only') return false
  if (allowed === 'every data action') return need !== 'control-plane'
  return allowed.includes(need)
}
