// `npm run -s token`: prints a SAS token for curl and friends, read from the hub's data directory
// (LMDB allows this while the hub runs).
//   npm run -s token                         service token, policy iothubowner
//   npm run -s token -- --policy service     another policy
//   npm run -s token -- --device dev1        device token signed with the device's primary key
//   npm run -s token -- --role "IoT Hub Data Reader"   bearer token (JWT) for a role, signed by the
//                                            hub's local issuer key (repeat --role for several)
import { parseArgs } from 'node:util'
import { existsSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import type { JWK } from 'jose'
import { createSasToken } from '../auth/sas-token.js'
import type { AccessPolicy } from '../auth/policies.js'
import type { DeviceRecord } from '../registry/device-registry.js'
import { openHubStore } from '../store/hub-store.js'
import { LOCAL_ISSUER, signRoleToken } from '../auth/local-issuer.js'

const OPTIONS = {
  policy: { type: 'string', default: 'iothubowner' }, device: { type: 'string' }, ttl: { type: 'string', default: '3600' },
  role: { type: 'string', multiple: true }, subject: { type: 'string', default: 'local-user' },
  'data-dir': { type: 'string', default: process.env.HYPERHUB_DATA_DIR ?? './data' }, 'host-name': { type: 'string', default: process.env.HYPERHUB_HOST_NAME ?? 'localhost' },
} as const
/** One line on stderr and exit code 2: what a person mistyping an option should see (not a stack trace). */
function refuse(message: string): never {
  console.error(`token: ${message}`)
  process.exit(2)
}
let parsed
try {
  parsed = parseArgs({ options: OPTIONS })
} catch (e) {
  // node's message runs over several lines of advice: its first sentence, then what the options are
  const first = (e as Error).message.split('\n')[0]!.replace(/\. To specify a positional argument.*$/, '').replace(/\.$/, '')
  refuse(`${first}; options: ${Object.keys(OPTIONS).map((o) => `--${o}`).join(', ')}`)
}
const { values } = parsed
// a whole number of seconds, at most the hub's default token lifetime (365 days)
const MAX_TTL_SECONDS = 365 * 86_400
if (!/^\d+$/.test(values.ttl) || Number(values.ttl) < 1 || Number(values.ttl) > MAX_TTL_SECONDS) refuse(`--ttl must be a whole number of seconds from 1 to ${MAX_TTL_SECONDS}, not ${JSON.stringify(values.ttl)}`)
// a mistyped data directory must not be created as an empty store
if (!existsSync(join(resolve(values['data-dir']), 'hub.mdb'))) refuse(`no hub data in ${values['data-dir']} (has the hub been started there? --data-dir or HYPERHUB_DATA_DIR names it)`)
if (values.role) {
  // the key file, not the store: a role token needs no LMDB
  const file = join(resolve(values['data-dir']), 'rbac', 'local-issuer.jwk.json')
  try {
    if (!existsSync(file)) throw new Error(`no local issuer key in ${values['data-dir']} (has the hub been started there with --local-issuer true?)`)
    const key = JSON.parse(readFileSync(file, 'utf8')) as JWK
    console.log(await signRoleToken(key, { roles: values.role, subject: values.subject, ttlSeconds: Number(values.ttl) }))
  } catch (e) {
    console.error(`token: ${(e as Error).message} (issuer ${LOCAL_ISSUER})`)
    process.exitCode = 2
  }
  process.exit()
}
const store = openHubStore(resolve(values['data-dir']))
try {
  const ttl = Number(values.ttl)
  const host = values['host-name']
  if (values.device) {
    const device = store.devices.get(values.device) as DeviceRecord | undefined
    const key = device?.authentication.symmetricKey.primaryKey
    if (!key) throw new Error(`no SAS device ${values.device} in ${values['data-dir']}`)
    console.log(createSasToken(encodeURIComponent(`${host}/devices/${values.device}`), key, undefined, ttl))
  } else {
    const policy = (store.meta.get('policies') as AccessPolicy[] | undefined)?.find((p) => p.keyName === values.policy)
    if (!policy) throw new Error(`no policy ${values.policy} in ${values['data-dir']} (has the hub been started there?)`)
    console.log(createSasToken(host, policy.primaryKey, policy.keyName, ttl))
  }
} catch (e) {
  console.error(`token: ${(e as Error).message}`)
  process.exitCode = 2
} finally {
  await store.close()
}
