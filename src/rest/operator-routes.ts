// For operators: Prometheus metrics (ServiceConnect: they name devices' transports and the hub's
// load), and liveness and readiness probes, open to anyone (they say only whether the hub serves).
import type { Route } from './http-server.js'
import type { HubMetrics } from '../metrics/hub-metrics.js'

export interface Readiness {
  /** what is not ready yet, or nothing */
  notReady(): string[]
}

export function operatorRoutes(metrics: HubMetrics, readiness: Readiness): Route[] {
  return [
    {
      method: 'get', pattern: /^\/metrics\/?$/, right: 'ServiceConnect', role: 'statistics/read',
      handle: async () => ({ status: 200, body: await metrics.text(), headers: { 'Content-Type': metrics.registry.contentType } }),
    },
    {
      method: 'get', pattern: /^\/health\/?$/, right: 'Anyone',
      // answered from the event loop that serves the sockets: an answer means it is not stuck
      handle: () => ({ status: 200, body: { status: 'ok' } }),
    },
    {
      method: 'get', pattern: /^\/ready\/?$/, right: 'Anyone',
      handle: () => {
        const missing = readiness.notReady()
        return missing.length === 0 ? { status: 200, body: { status: 'ready' } } : { status: 503, body: { status: 'not ready', waitingFor: missing } }
      },
    },
  ]
}
