// `hyperhub token`: a SAS token of a policy or a device, or a bearer token (JWT) for roles, for curl
// and friends. From the data directory it works while the hub is stopped too.
import { existsSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { Command, Option } from 'commander'
import type { JWK } from 'jose'
import { createSasToken } from '../../auth/sas-token.js'
import { LOCAL_ISSUER, signRoleToken } from '../../auth/local-issuer.js'
import type { DeviceRecord } from '../../registry/device-registry.js'
import { action } from '../hyperhub.js'
import { readStoreValue } from '../hub-target.js'
import { CliError, intOption, json, segment } from '../output.js'

// at most the hub's default token lifetime (365 days)
const MAX_TTL_SECONDS = 365 * 86_400

function deviceKeyFromStore(dataDir: string, deviceId: string): string {
  const device = readStoreValue<DeviceRecord>(dataDir, 'devices', deviceId)
  const key = device?.authentication.symmetricKey.primaryKey
  if (!key) throw new CliError(device ? `device ${deviceId} has no SAS key (it uses X.509)` : `no device ${deviceId} in ${dataDir}`, 1)
  return key
}

export function tokenCommand(): Command {
  return new Command('token')
    .description('print a SAS token (a policy\'s, or a device\'s with --device) or a bearer token for roles (--role)')
    .option('--device <device-id>', 'a device token, signed with the device\'s primary key')
    .addOption(new Option('--role <role...>', 'a bearer token (JWT) for these IoT Hub roles, from the hub\'s local issuer'))
    .option('--subject <name>', 'the bearer token\'s subject', 'local-user')
    .option('--ttl <seconds>', `lifetime in seconds (1..${MAX_TTL_SECONDS})`, '3600')
    .option('--host-name <name>', 'the host name a SAS token is signed for (default: the running hub\'s, else $HYPERHUB_HOST_NAME or localhost)')
    .action(action(async (ctx, o: { device?: string; role?: string[]; subject: string; ttl: string; hostName?: string }) => {
      const ttl = intOption('--ttl', o.ttl, 1, MAX_TTL_SECONDS)
      const out = (token: string) => ctx.print(ctx.options.json ? json({ token }) : token)
      if (o.role) {
        // the key file, not the store: a role token needs no policy
        const file = join(resolve(ctx.options.dataDir), 'rbac', 'local-issuer.jwk.json')
        if (!existsSync(file)) throw new CliError(`no local issuer key in ${ctx.options.dataDir} (has the hub been started there with --local-issuer true?); issuer ${LOCAL_ISSUER}`)
        const key = JSON.parse(readFileSync(file, 'utf8')) as JWK
        // an unknown role name is the caller's mistake, like a bad option
        const token = await signRoleToken(key, { roles: o.role, subject: o.subject, ttlSeconds: ttl }).catch((e: Error) => { throw new CliError(e.message) })
        return out(token)
      }
      const target = ctx.target()
      const host = o.hostName ?? target.hostName
      if (!o.device) return out(createSasToken(host, target.policy.primaryKey, target.policy.keyName, ttl))
      const useStore = !(ctx.options.connectionString ?? (ctx.options.dataDirGiven ? undefined : process.env.HYPERHUB_CONNECTION_STRING))
      let key: string | null | undefined
      if (useStore) key = deviceKeyFromStore(ctx.options.dataDir, o.device)
      else {
        const { body } = await ctx.client().call<DeviceRecord>('GET', `/devices/${segment(o.device)}`)
        key = body.authentication.symmetricKey?.primaryKey
        if (!key) throw new CliError(`device ${o.device} has no SAS key (it uses X.509)`, 1)
      }
      out(createSasToken(encodeURIComponent(`${host}/devices/${o.device}`), key, undefined, ttl))
    }))
}
