// Issue 16: what one AMQP put-token covers (cbs-auth.ts ConnectionGrants): a device's own token its
// device's links only, not its modules'; a module's token that module's links only, not its
// device's or a sibling's; a DeviceConnect policy for all devices covers both.
import { describe, expect, it } from 'vitest'
import { ConnectionGrants, type Grant } from '../src/amqp/cbs-auth.js'
import type { DeviceIdentity } from '../src/auth/authenticator.js'

const identity = (deviceId: string, moduleId?: string) => ({
  device: { deviceId }, ...(moduleId ? { module: { deviceId, moduleId } } : {}), expiry: 1e10, authMethod: '',
}) as unknown as DeviceIdentity
const grant = (path: string[], device?: DeviceIdentity): Grant => ({ path, expiry: 1e10, rights: ['DeviceConnect'], ...(device ? { device } : {}) })

describe('AMQP grants for devices and modules', () => {
  it('keeps a device\'s token to its device and a module\'s to its module', () => {
    const g = new ConnectionGrants()
    g.add(grant(['devices', 'd'], identity('d')), 0)
    expect(g.allows('/devices/d/messages/events', 'DeviceConnect', 0)).toBe(true)
    expect(g.allows('/devices/d/modules/m/messages/events', 'DeviceConnect', 0)).toBe(false)
    const m = new ConnectionGrants()
    m.add(grant(['devices', 'd', 'modules', 'm'], identity('d', 'm')), 0)
    expect(m.allows('/devices/d/modules/m/twin', 'DeviceConnect', 0)).toBe(true)
    expect(m.allows('/devices/d/modules/M/twin', 'DeviceConnect', 0)).toBe(false)
    expect(m.allows('/devices/d/modules/n/twin', 'DeviceConnect', 0)).toBe(false)
    expect(m.allows('/devices/d/messages/events', 'DeviceConnect', 0)).toBe(false)
    const p = new ConnectionGrants()
    p.add(grant(['devices']), 0)
    expect([p.allows('/devices/d/messages/events', 'DeviceConnect', 0), p.allows('/devices/d/modules/m/twin', 'DeviceConnect', 0)]).toEqual([true, true])
  })
})
