// Creates N devices sharing one symmetric key, through the hub's registry REST API, for load runs.
// Usage: tsx bench/provision-devices.ts --https-port P --owner-key K --count N [--prefix dev-] [--width 6] [--start 1] --device-key B64
import https from 'node:https'
import { parseArgs } from 'node:util'
import { createSasToken } from '../src/auth/sas-token.js'

const { values } = parseArgs({
  options: {
    'https-port': { type: 'string', default: '443' }, 'owner-key': { type: 'string' }, count: { type: 'string', default: '100' },
    prefix: { type: 'string', default: 'dev-' }, width: { type: 'string', default: '6' }, start: { type: 'string', default: '1' },
    'device-key': { type: 'string' }, concurrency: { type: 'string', default: '32' }, ca: { type: 'string' },
  },
})
const port = Number(values['https-port'])
const token = createSasToken('localhost', values['owner-key']!, 'iothubowner', 24 * 3600)
const agent = new https.Agent({ keepAlive: true, maxSockets: Number(values.concurrency), rejectUnauthorized: false })

function put(id: string): Promise<number> {
  const body = JSON.stringify({ deviceId: id, authentication: { type: 'sas', symmetricKey: { primaryKey: values['device-key'], secondaryKey: values['device-key'] } } })
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, path: `/devices/${encodeURIComponent(id)}?api-version=2021-04-12`, method: 'PUT', agent,
      headers: { Authorization: token, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode!))
    })
    req.on('error', reject)
    req.end(body)
  })
}

const count = Number(values.count)
const ids = Array.from({ length: count }, (_, i) => `${values.prefix}${String(Number(values.start) + i).padStart(Number(values.width), '0')}`)
let next = 0, created = 0, existed = 0
await Promise.all(Array.from({ length: Number(values.concurrency) }, async () => {
  while (next < ids.length) {
    const status = await put(ids[next++]!)
    if (status === 200) created++
    else if (status === 409) existed++
    else throw new Error(`PUT failed with ${status}`)
  }
}))
agent.destroy()
console.log(`provisioned ${created} devices (${existed} already existed)`)
