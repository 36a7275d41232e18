// REST calls to a hub process as its owner over kept-alive connections, timed: what the benches that
// drive the service API (configurations, jobs) share.
import https from 'node:https'
import { createSasToken } from '../../src/auth/sas-token.js'
import type { HubProcess } from '../../test/helpers/hub-process.js'

export interface OwnerRest {
  call(method: string, path: string, body?: unknown): Promise<{ status: number; body: any; ms: number }>
  close(): void
}

export function ownerRest(hub: HubProcess, maxSockets: number): OwnerRest {
  const agent = new https.Agent({ keepAlive: true, maxSockets })
  const token = createSasToken('localhost', hub.ownerKey, 'iothubowner', 24 * 3600)
  return {
    call(method, path, body) {
      const started = performance.now()
      return new Promise((resolve, reject) => {
        const text = body === undefined ? undefined : JSON.stringify(body)
        const req = https.request({ host: '127.0.0.1', port: hub.ports.https, servername: 'localhost', ca: hub.ca, agent, method, path,
          headers: { Authorization: token, 'Content-Type': 'application/json', ...(text ? { 'Content-Length': Buffer.byteLength(text) } : {}) } }, (res) => {
          let out = ''
          res.on('data', (d: Buffer) => { out += d.toString() })
          res.on('end', () => resolve({ status: res.statusCode!, body: out ? JSON.parse(out) : undefined, ms: performance.now() - started }))
        })
        req.on('error', reject)
        req.end(text)
      })
    },
    close: () => agent.destroy(),
  }
}
