// Devices for load runs, created through the hub's registry REST API with one shared key, and the
// SAS credentials each simulated device connects with.
import https from 'node:https'
import { createSasToken } from '../../src/auth/sas-token.js'

export async function provisionDevices(o: { httpsPort: number; ownerKey: string; ids: string[]; deviceKey: string; concurrency?: number }): Promise<{ created: number; existed: number }> {
  const token = createSasToken('localhost', o.ownerKey, 'iothubowner', 24 * 3600)
  const agent = new https.Agent({ keepAlive: true, maxSockets: o.concurrency ?? 32, rejectUnauthorized: false })
  const put = (id: string) => new Promise<number>((resolve, reject) => {
    const body = JSON.stringify({ deviceId: id, authentication: { type: 'sas', symmetricKey: { primaryKey: o.deviceKey, secondaryKey: o.deviceKey } } })
    const req = https.request({ host: '127.0.0.1', port: o.httpsPort, path: `/devices/${encodeURIComponent(id)}?api-version=2021-04-12`, method: 'PUT', agent,
      headers: { Authorization: token, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode!))
    })
    req.on('error', reject)
    req.end(body)
  })
  let next = 0, created = 0, existed = 0
  await Promise.all(Array.from({ length: o.concurrency ?? 32 }, async () => {
    while (next < o.ids.length) {
      const status = await put(o.ids[next++]!)
      if (status === 200) created++
      else if (status === 409) existed++
      else throw new Error(`creating a device failed with HTTP ${status}`)
    }
  }))
  agent.destroy()
  return { created, existed }
}

export function deviceIds(count: number, prefix = 'dev-', start = 1): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}${String(start + i).padStart(6, '0')}`)
}

export function hubCredentials(id: string, deviceKey: string, hostName = 'localhost') {
  return {
    clientId: id,
    username: `${hostName}/${id}/?api-version=2021-04-12`,
    password: createSasToken(encodeURIComponent(`${hostName}/devices/${id}`), deviceKey, undefined, 6 * 3600),
    topic: `devices/${id}/messages/events/`,
  }
}
