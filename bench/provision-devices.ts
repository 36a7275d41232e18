// Creates N devices sharing one symmetric key, through the hub's registry REST API, for load runs.
// Usage: tsx bench/provision-devices.ts --https-port P --owner-key K --count N --device-key B64 [--prefix dev-] [--start 1]
import { parseArgs } from 'node:util'
import { deviceIds, provisionDevices } from './load/provision.js'

const { values } = parseArgs({
  options: {
    'https-port': { type: 'string', default: '443' }, 'owner-key': { type: 'string' }, count: { type: 'string', default: '100' },
    prefix: { type: 'string', default: 'dev-' }, start: { type: 'string', default: '1' }, 'device-key': { type: 'string' },
  },
})
const r = await provisionDevices({
  httpsPort: Number(values['https-port']), ownerKey: values['owner-key']!, deviceKey: values['device-key']!,
  ids: deviceIds(Number(values.count), values.prefix, Number(values.start)),
})
console.log(`provisioned ${r.created} devices (${r.existed} already existed)`)
