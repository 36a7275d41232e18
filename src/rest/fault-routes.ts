// Fault injection for integration tests (owner only, like the tier): POST a fault for a device, a
// protocol or the whole hub and a number of seconds; list them; take one back. A drop-connections
// fault closes what it covers at once and refuses new connections while it lasts.
import type { Route } from './http-server.js'
import { HubError } from './hub-error.js'
import type { DeviceEdge } from '../edge/device-edge.js'
import { FaultError, type FaultInjector } from '../throttle/faults.js'

export function faultRoutes(faults: FaultInjector, edge: Pick<DeviceEdge, 'dropConnections'>): Route[] {
  return [
    {
      method: 'post', pattern: /^\/hyperhub\/faults\/?$/, right: 'ControlPlane',
      handle: (req) => {
        const spec = req.json<Record<string, unknown>>()
        if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) throw new HubError(400004, 'the body must be {"kind": "throttle", "seconds": 30, "deviceId"?: "...", "protocol"?: "mqtt"}')
        try {
          const fault = faults.add(spec)
          const dropped = fault.kind === 'drop-connections' ? edge.dropConnections(fault) : 0
          return { status: 201, body: { ...fault, ...(fault.kind === 'drop-connections' ? { dropped } : {}) } }
        } catch (e) {
          if (e instanceof FaultError) throw new HubError(400004, e.message)
          throw e
        }
      },
    },
    {
      method: 'get', pattern: /^\/hyperhub\/faults\/?$/, right: 'ControlPlane',
      handle: () => ({ status: 200, body: faults.list() }),
    },
    {
      method: 'delete', pattern: /^\/hyperhub\/faults\/(\d+)\/?$/, right: 'ControlPlane',
      handle: (req) => {
        if (!faults.remove(Number(req.params[0]))) throw new HubError(404000, `no fault ${req.params[0]}`)
        return { status: 204 }
      },
    },
  ]
}
