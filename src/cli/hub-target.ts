// Which hub a command talks to, and with what credentials: a connection string (as `az iot hub`
// takes one), or the data directory of a hub on this machine (its policies, its CA and the ports
// it wrote in hub-running.json).
import { existsSync, readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { networkInterfaces } from 'node:os'
import { join, resolve } from 'node:path'
import { open } from 'lmdb'
import type { AccessPolicy } from '../auth/policies.js'
import { createSasToken } from '../auth/sas-token.js'
import { readRunFile, runFilePath, type HubRunInfo } from '../hub-run-file.js'
import { processAlive } from '../store/data-dir-lock.js'
import { CliError } from './output.js'

export interface TargetOptions {
  connectionString?: string
  dataDir: string
  /** --data-dir was given on the command line: it beats a connection string in the environment */
  dataDirGiven?: boolean
  policy: string
  /** host:port to dial instead of the connection string's host name on 443 */
  hub?: string
  ca?: string
}

export interface HubTarget {
  /** the host name tokens are signed for (`sr`) and TLS checks */
  hostName: string
  /** where to dial */
  address: string
  /** the TLS server name to ask for and check: the host name, unless it is an IP address (SNI takes none) */
  servername?: string
  httpsPort: number
  /** MQTT over TLS, as a device would dial it */
  mqttPort: number
  /** the CA to trust beside the system's (undefined: system and NODE_EXTRA_CA_CERTS only) */
  ca?: string
  policy: AccessPolicy
  /** a service token of the policy, valid for `ttlSeconds` */
  serviceToken(ttlSeconds?: number): string
  /** how the hub was found, for error messages */
  describe: string
}

const ANY_ADDRESS = new Set(['0.0.0.0', '::', ''])

/** `HostName=…;SharedAccessKeyName=…;SharedAccessKey=…` into its parts; CliError names what is missing. */
export function parseServiceConnectionString(text: string): { hostName: string; keyName: string; key: string } {
  const parts = new Map<string, string>()
  for (const field of text.split(';')) {
    const at = field.indexOf('=')
    if (at > 0) parts.set(field.slice(0, at).trim().toLowerCase(), field.slice(at + 1).trim())
  }
  const hostName = parts.get('hostname'), keyName = parts.get('sharedaccesskeyname'), key = parts.get('sharedaccesskey')
  if (!hostName || !keyName || !key) {
    const missing = [!hostName && 'HostName', !keyName && 'SharedAccessKeyName', !key && 'SharedAccessKey'].filter(Boolean).join(', ')
    throw new CliError(`the connection string has no ${missing} (a service connection string looks like HostName=<host>;SharedAccessKeyName=<policy>;SharedAccessKey=<key>)`)
  }
  return { hostName, keyName, key }
}

/** One value of a data directory's store, read-only (the hub may be running). */
export function readStoreValue<T>(dataDir: string, db: string, key: string): T | undefined {
  const file = join(resolve(dataDir), 'hub.mdb')
  // a mistyped data directory must not be created as an empty store
  if (!existsSync(file)) throw new CliError(`no hub data in ${dataDir} (has the hub been started there? --data-dir or HYPERHUB_DATA_DIR names it)`)
  const root = open({ path: file, readOnly: true })
  try {
    return root.openDB({ name: db }).get(key) as T | undefined
  } finally {
    // a read-only environment: its close writes nothing, and a failure loses nothing
    root.close().catch(() => {})
  }
}

/** The policies in a data directory's store. */
export function readPolicies(dataDir: string): AccessPolicy[] {
  return readStoreValue<AccessPolicy[]>(dataDir, 'meta', 'policies') ?? []
}

function splitAddress(text: string, defaultPort: number): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(text)
  if (!m) throw new CliError(`--hub must be host or host:port, not ${JSON.stringify(text)}`)
  const port = m[2] === undefined ? defaultPort : Number(m[2])
  if (port < 1 || port > 65535) throw new CliError(`--hub's port must be 1..65535, not ${m[2]}`)
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port }
}

export function resolveTarget(o: TargetOptions): HubTarget {
  const target = findTarget(o)
  return isIP(target.hostName) ? target : { ...target, servername: target.hostName }
}

function findTarget(o: TargetOptions): HubTarget {
  const ca = o.ca === undefined ? undefined : readCa(o.ca)
  // IOTHUB_CONNECTION_STRING is not read: it usually names a real Azure hub, and a local command must not reach it unasked
  const connectionString = o.connectionString ?? (o.dataDirGiven ? undefined : process.env.HYPERHUB_CONNECTION_STRING)
  if (connectionString) {
    const cs = parseServiceConnectionString(connectionString)
    const dial = splitAddress(o.hub ?? cs.hostName, 443)
    const policy: AccessPolicy = { keyName: cs.keyName, primaryKey: cs.key, secondaryKey: cs.key, rights: [] }
    return {
      hostName: cs.hostName.replace(/:\d+$/, ''), address: dial.host, httpsPort: dial.port, mqttPort: 8883, ca, policy,
      serviceToken: (ttl = 3600) => createSasToken(cs.hostName.replace(/:\d+$/, ''), cs.key, cs.keyName, ttl),
      describe: `https://${dial.host}:${dial.port}`,
    }
  }
  const policies = readPolicies(o.dataDir)
  const policy = policies.find((p) => p.keyName === o.policy)
  if (!policy) throw new CliError(`no policy ${o.policy} in ${o.dataDir} (policies: ${policies.map((p) => p.keyName).join(', ') || 'none'})`)
  const run = liveRunInfo(o.dataDir)
  const hostName = run?.hostName ?? process.env.HYPERHUB_HOST_NAME ?? 'localhost'
  const dial = o.hub ? splitAddress(o.hub, 443) : { host: run && !ANY_ADDRESS.has(run.host) ? run.host : '127.0.0.1', port: run?.ports.https ?? 443 }
  // the data directory's own CA, whatever the run file names: the file says where the hub listens, not whom to trust
  const caFile = join(resolve(o.dataDir), 'tls', 'ca.pem')
  return {
    hostName, address: dial.host, httpsPort: dial.port, mqttPort: run?.ports.mqtt ?? 8883,
    ca: ca ?? (existsSync(caFile) ? readFileSync(caFile, 'utf8') : undefined), policy,
    serviceToken: (ttl = 3600) => createSasToken(hostName, policy.primaryKey, policy.keyName, ttl),
    describe: `https://${dial.host}:${dial.port} (${run ? `the hub of ${o.dataDir}` : `no running hub recorded in ${o.dataDir}`})`,
  }
}

/**
 * The run file of a hub that is running: well-formed, its process alive, and listening on an address
 * of this machine (the owner's token is sent there). Anything else reads as "not running".
 */
function liveRunInfo(dataDir: string): HubRunInfo | undefined {
  const run = readRunFile(resolve(dataDir))
  if (!run) return undefined
  const port = (p: unknown) => Number.isInteger(p) && (p as number) > 0 && (p as number) < 65536
  if (!Number.isInteger(run.pid) || typeof run.hostName !== 'string' || typeof run.host !== 'string' || !run.ports || !port(run.ports.https) || !port(run.ports.mqtt)) {
    throw new CliError(`${runFilePath(resolve(dataDir))} is not a hub's run file (remove it if no hub runs there)`)
  }
  if (!processAlive(run.pid)) return undefined
  const local = new Set(['127.0.0.1', '::1', ...Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address))])
  if (!ANY_ADDRESS.has(run.host) && !local.has(run.host)) throw new CliError(`${runFilePath(resolve(dataDir))} names ${run.host}, which is not an address of this machine; refusing to send the hub's keys there`)
  return run
}

function readCa(file: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch (e) {
    throw new CliError(`cannot read the CA file ${file} (${(e as NodeJS.ErrnoException).code})`)
  }
}
