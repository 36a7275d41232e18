// Hub settings: defaults, then a JSON config file, then HYPERHUB_* environment variables, then
// command-line flags. Every value is validated at start; a bad one stops the hub with a message that
// names the setting and the three places it can be set.
import { readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { resolve } from 'node:path'
import type { LogLevel } from './log.js'
import type { Durability } from './store/hub-store.js'
import { parseTier, tierLimits, TierError } from './throttle/tiers.js'

export interface HubConfig {
  hostName: string
  /** naming mode: the hub answers as `<name>.azure-devices.net` (for tools that insist on Azure's host names) */
  azureHubName: string
  tlsNames: string[]
  host: string
  dataDir: string
  mqttPort: number
  httpsPort: number
  mqttTcpPort: number | null
  amqpPort: number | null
  shards: number
  partitions: number
  retentionDays: number
  logLevel: LogLevel
  durability: Durability
  sasVerifier: 'wasm' | 'js'
  mqttFramer: 'wasm' | 'js'
  /** worker threads that accept MQTT connections and do their TLS, framing and protocol; 0: the main thread does */
  ioThreads: number
  /** writes stop (503 ServerBusy) while the data directory's disk has less than this free */
  minFreeDiskMb: number
  /** webhook endpoints may name loopback, link-local and private addresses (local receivers, tests) */
  allowPrivateWebhooks: boolean
  /** SAS tokens valid for longer than this are refused */
  maxTokenLifetimeDays: number
  /** Azure tier and units (`S1`, `S1:10`, …) whose throttles and daily quota apply; `unlimited` applies none */
  tier: string
  /** `embedded` (Azurite, run by the hub), `off`, or an Azure Storage connection string */
  blobStore: string
  /** the embedded blob store's port (0: one picked once and kept in the data directory) */
  blobPort: number
  /** `boot`: the embedded blob store starts with the hub; `first-use`: with the first upload or storage route */
  blobStoreStart: 'boot' | 'first-use'
  fileUploadContainer: string
  fileUploadSasTtlMinutes: number
  fileUploadNotifications: boolean
  fileNotificationTtlMinutes: number
  fileNotificationLockSeconds: number
  fileNotificationMaxDeliveries: number
  /** how often automatic configurations are evaluated against the twins (Azure: about every 5 minutes) */
  configurationIntervalSeconds: number
  /** Azure's disableLocalAuth: tokens signed with a shared access policy's key are refused (the built-in endpoint keeps them) */
  disableLocalAuth: boolean
  /** bearer tokens signed by the hub's own key (`npm run token -- --role …`) are trusted */
  localIssuer: boolean
  /** a JWKS file or URL whose keys sign trusted bearer tokens ('' for none) */
  jwks: string
  /** the `iss` the JWKS's tokens carry */
  jwtIssuer: string
  /** the `aud` every bearer token must carry */
  jwtAudience: string
}

type Kind = 'port' | 'optionalPort' | 'string' | 'optionalString' | 'names' | 'int' | 'level' | 'durability' | 'wasmOrJs' | 'bool' | 'tier' | 'blobStore' | 'blobStoreStart' | 'container'
interface Setting { key: keyof HubConfig; flag: string; env: string; kind: Kind; min?: number; max?: number; help: string }

export const SETTINGS: Setting[] = [
  { key: 'hostName', flag: '--host-name', env: 'HYPERHUB_HOST_NAME', kind: 'string', help: 'IoT hub host name devices and services put in their connection strings' },
  { key: 'azureHubName', flag: '--azure-hub-name', env: 'HYPERHUB_AZURE_HUB_NAME', kind: 'optionalString', help: 'naming mode: the host name becomes <name>.azure-devices.net (for tools such as Azure IoT Explorer; map it to this machine in the hosts file)' },
  { key: 'tlsNames', flag: '--tls-names', env: 'HYPERHUB_TLS_NAMES', kind: 'names', help: 'extra DNS names / IPs for the server certificate (comma-separated)' },
  { key: 'host', flag: '--host', env: 'HYPERHUB_HOST', kind: 'string', help: 'address every listener binds' },
  { key: 'dataDir', flag: '--data-dir', env: 'HYPERHUB_DATA_DIR', kind: 'string', help: 'where LMDB and the local CA live' },
  { key: 'mqttPort', flag: '--mqtt-port', env: 'HYPERHUB_MQTT_PORT', kind: 'port', help: 'MQTT over TLS' },
  { key: 'httpsPort', flag: '--https-port', env: 'HYPERHUB_HTTPS_PORT', kind: 'port', help: 'HTTPS REST and MQTT over WebSocket' },
  { key: 'mqttTcpPort', flag: '--mqtt-tcp-port', env: 'HYPERHUB_MQTT_TCP_PORT', kind: 'optionalPort', help: 'plain-TCP MQTT for local use and benchmarks ("off" to disable)' },
  { key: 'amqpPort', flag: '--amqp-port', env: 'HYPERHUB_AMQP_PORT', kind: 'optionalPort', help: 'AMQP over TLS: service client and the Event Hubs-compatible endpoint ("off" to disable)' },
  { key: 'shards', flag: '--shards', env: 'HYPERHUB_SHARDS', kind: 'int', min: 1, max: 64, help: 'worker threads that own device sessions' },
  { key: 'partitions', flag: '--partitions', env: 'HYPERHUB_PARTITIONS', kind: 'int', min: 2, max: 32, help: 'built-in endpoint partitions (fixed once data exists)' },
  { key: 'retentionDays', flag: '--retention-days', env: 'HYPERHUB_RETENTION_DAYS', kind: 'int', min: 1, max: 7, help: 'built-in endpoint retention' },
  { key: 'durability', flag: '--durability', env: 'HYPERHUB_DURABILITY', kind: 'durability', help: 'process: acked messages survive a hub crash | power: also a power loss (slower)' },
  { key: 'sasVerifier', flag: '--sas-verifier', env: 'HYPERHUB_SAS_VERIFIER', kind: 'wasmOrJs', help: 'wasm (HMAC in WebAssembly, verified tokens cached) | js (node:crypto)' },
  { key: 'ioThreads', flag: '--io-threads', env: 'HYPERHUB_IO_THREADS', kind: 'int', min: 0, max: 63, help: 'worker threads that serve MQTT over TLS and TCP (default: the core count; 0: the main thread)' },
  { key: 'mqttFramer', flag: '--mqtt-framer', env: 'HYPERHUB_MQTT_FRAMER', kind: 'wasmOrJs', help: 'wasm (AssemblyScript framer) | js' },
  { key: 'minFreeDiskMb', flag: '--min-free-disk-mb', env: 'HYPERHUB_MIN_FREE_DISK_MB', kind: 'int', min: 0, max: 1_000_000, help: 'writes are refused (ServerBusy) while the data disk has less than this many MB free' },
  { key: 'maxTokenLifetimeDays', flag: '--max-token-lifetime-days', env: 'HYPERHUB_MAX_TOKEN_LIFETIME_DAYS', kind: 'int', min: 1, max: 36_500, help: 'SAS tokens that stay valid for longer than this are refused' },
  { key: 'allowPrivateWebhooks', flag: '--allow-private-webhooks', env: 'HYPERHUB_ALLOW_PRIVATE_WEBHOOKS', kind: 'bool', help: 'true: webhook endpoints may send to loopback, link-local and private addresses (default false)' },
  { key: 'tier', flag: '--tier', env: 'HYPERHUB_TIER', kind: 'tier', help: 'unlimited (default) | F1 | B1..B3 | S1..S3, with units as S1:10: Azure\'s throttles and daily quota for that tier' },
  { key: 'blobStore', flag: '--blob-store', env: 'HYPERHUB_BLOB_STORE', kind: 'blobStore', help: 'embedded (Azurite, run by the hub; default) | off | an Azure Storage connection string: where file uploads and storage endpoints write' },
  { key: 'blobPort', flag: '--blob-port', env: 'HYPERHUB_BLOB_PORT', kind: 'port', help: 'the embedded blob store\'s HTTPS port on 127.0.0.1 (0: picked once, then kept)' },
  { key: 'blobStoreStart', flag: '--blob-store-start', env: 'HYPERHUB_BLOB_STORE_START', kind: 'blobStoreStart', help: 'boot (default) | first-use: when the embedded blob store starts' },
  { key: 'fileUploadContainer', flag: '--file-upload-container', env: 'HYPERHUB_FILE_UPLOAD_CONTAINER', kind: 'container', help: 'blob container file uploads go to (created if missing)' },
  { key: 'fileUploadSasTtlMinutes', flag: '--file-upload-sas-ttl-minutes', env: 'HYPERHUB_FILE_UPLOAD_SAS_TTL_MINUTES', kind: 'int', min: 1, max: 1440, help: 'how long an upload\'s SAS (and its slot) lasts' },
  { key: 'fileUploadNotifications', flag: '--file-upload-notifications', env: 'HYPERHUB_FILE_UPLOAD_NOTIFICATIONS', kind: 'bool', help: 'true (default): completed uploads notify the service' },
  { key: 'fileNotificationTtlMinutes', flag: '--file-notification-ttl-minutes', env: 'HYPERHUB_FILE_NOTIFICATION_TTL_MINUTES', kind: 'int', min: 1, max: 2880, help: 'how long a file notification waits for the service' },
  { key: 'fileNotificationLockSeconds', flag: '--file-notification-lock-seconds', env: 'HYPERHUB_FILE_NOTIFICATION_LOCK_SECONDS', kind: 'int', min: 5, max: 300, help: 'how long a received file notification stays locked' },
  { key: 'configurationIntervalSeconds', flag: '--configuration-interval-seconds', env: 'HYPERHUB_CONFIGURATION_INTERVAL_SECONDS', kind: 'int', min: 1, max: 3600, help: 'how often automatic configurations are applied to the twins they target and their metrics counted' },
  { key: 'fileNotificationMaxDeliveries', flag: '--file-notification-max-deliveries', env: 'HYPERHUB_FILE_NOTIFICATION_MAX_DELIVERIES', kind: 'int', min: 1, max: 100, help: 'deliveries of a file notification before it is dropped' },
  { key: 'disableLocalAuth', flag: '--disable-local-auth', env: 'HYPERHUB_DISABLE_LOCAL_AUTH', kind: 'bool', help: 'true: shared access policy tokens are refused (Azure\'s disableLocalAuth); back ends use bearer tokens; the built-in endpoint keeps SAS' },
  { key: 'localIssuer', flag: '--local-issuer', env: 'HYPERHUB_LOCAL_ISSUER', kind: 'bool', help: 'true (default): bearer tokens signed by the hub\'s own key (npm run token -- --role ...) are trusted' },
  { key: 'jwks', flag: '--jwks', env: 'HYPERHUB_JWKS', kind: 'optionalString', help: 'a JWKS file or URL (https, or http on loopback) whose keys sign trusted bearer tokens' },
  { key: 'jwtIssuer', flag: '--jwt-issuer', env: 'HYPERHUB_JWT_ISSUER', kind: 'optionalString', help: 'the "iss" of bearer tokens signed by --jwks (needed with it)' },
  { key: 'jwtAudience', flag: '--jwt-audience', env: 'HYPERHUB_JWT_AUDIENCE', kind: 'string', help: 'the "aud" every bearer token must carry (default https://iothubs.azure.net)' },
  { key: 'logLevel', flag: '--log-level', env: 'HYPERHUB_LOG_LEVEL', kind: 'level', help: 'debug | info | warn | error | silent' },
]

export function defaultConfig(): HubConfig {
  return {
    hostName: 'localhost', azureHubName: '', tlsNames: [], host: '0.0.0.0', dataDir: './data',
    mqttPort: 8883, httpsPort: 443, mqttTcpPort: null, amqpPort: 5671,
    shards: Math.max(1, availableParallelism() - 1), partitions: 4, retentionDays: 1, logLevel: 'info', durability: 'process', sasVerifier: 'wasm', mqttFramer: 'wasm', ioThreads: availableParallelism(), minFreeDiskMb: 100, allowPrivateWebhooks: false, maxTokenLifetimeDays: 365, tier: 'unlimited',
    blobStore: 'embedded', blobPort: 0, blobStoreStart: 'boot', fileUploadContainer: 'fileupload', fileUploadSasTtlMinutes: 60, fileUploadNotifications: true,
    fileNotificationTtlMinutes: 60, fileNotificationLockSeconds: 60, fileNotificationMaxDeliveries: 10, configurationIntervalSeconds: 60,
    disableLocalAuth: false, localIssuer: true, jwks: '', jwtIssuer: '', jwtAudience: 'https://iothubs.azure.net',
  }
}

export class ConfigError extends Error {}

function where(s: Setting): string {
  return `set it with ${s.flag}, ${s.env} or "${s.key}" in the config file`
}

function parseValue(s: Setting, raw: unknown): unknown {
  const bad = (what: string) => new ConfigError(`${s.key}: ${what} (got ${JSON.stringify(raw)}); ${where(s)}`)
  const asInt = (v: unknown) => (typeof v === 'number' ? v : typeof v === 'string' && /^-?\d+$/.test(v.trim()) ? Number(v) : NaN)
  switch (s.kind) {
    case 'string':
      if (typeof raw !== 'string' || raw.trim() === '') throw bad('must be a non-empty string')
      return raw.trim()
    case 'optionalString':
      if (typeof raw !== 'string') throw bad('must be a string')
      return raw.trim()
    case 'names': {
      const list = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(',') : null
      if (!list || list.some((n) => typeof n !== 'string')) throw bad('must be a list of names')
      return (list as string[]).map((n) => n.trim()).filter(Boolean)
    }
    case 'port':
    case 'optionalPort': {
      if (s.kind === 'optionalPort' && (raw === null || raw === 'off' || raw === false)) return null
      const n = asInt(raw)
      if (!Number.isInteger(n) || n < 0 || n > 65535) throw bad(`must be a port number 0..65535${s.kind === 'optionalPort' ? ' or "off"' : ''}`)
      return n
    }
    case 'int': {
      const n = asInt(raw)
      if (!Number.isInteger(n) || n < s.min! || n > s.max!) throw bad(`must be an integer ${s.min}..${s.max}`)
      return n
    }
    case 'bool':
      if (raw === true || raw === 'true') return true
      if (raw === false || raw === 'false') return false
      throw bad('must be true or false')
    case 'wasmOrJs':
      if (raw !== 'wasm' && raw !== 'js') throw bad('must be wasm or js')
      return raw
    case 'durability':
      if (raw !== 'process' && raw !== 'power') throw bad('must be process or power')
      return raw
    case 'tier':
      try {
        tierLimits(parseTier(String(raw)))
      } catch (e) {
        if (e instanceof TierError) throw bad(e.message)
        throw e
      }
      return String(raw)
    case 'blobStore': {
      const v = typeof raw === 'string' ? raw.trim() : ''
      if (v === 'embedded' || v === 'off') return v
      // a connection string: checked in full when the hub opens it (storage-connection-string.ts)
      // never echoed: a connection string holds the account key
      if (!/AccountName=/i.test(v) && !/BlobEndpoint=/i.test(v)) throw new ConfigError(`${s.key}: must be embedded, off or a storage connection string (AccountName=…;AccountKey=…); ${where(s)}`)
      return v
    }
    case 'blobStoreStart':
      if (raw !== 'boot' && raw !== 'first-use') throw bad('must be boot or first-use')
      return raw
    case 'container':
      // Azure's container names: 3-63 lowercase letters, digits and single hyphens, starting with a letter or digit
      if (typeof raw !== 'string' || !/^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$/.test(raw)) throw bad('must be 3-63 lowercase letters, digits and single hyphens')
      return raw
    case 'level':
      if (!['debug', 'info', 'warn', 'error', 'silent'].includes(String(raw))) throw bad('must be debug, info, warn, error or silent')
      return raw
  }
}

/** Builds the config from argv/env/file. Throws ConfigError with a message meant for the user. */
export function loadConfig(argv: string[], env: NodeJS.ProcessEnv = process.env, overrides: Partial<HubConfig> = {}): HubConfig {
  const flags = new Map<string, string>()
  let configFile = env.HYPERHUB_CONFIG
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    const [name, inline] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined]
    const value = inline ?? argv[i + 1]
    if (name === '--config') { configFile = value; if (inline === undefined) i++; continue }
    if (!SETTINGS.some((s) => s.flag === name)) throw new ConfigError(`unknown option ${name}; run with --help for the list`)
    if (value === undefined) throw new ConfigError(`${name} needs a value`)
    flags.set(name, value)
    if (inline === undefined) i++
  }
  let file: Record<string, unknown> = {}
  if (configFile) {
    try {
      file = JSON.parse(readFileSync(configFile, 'utf8')) as Record<string, unknown>
    } catch (e) {
      throw new ConfigError(`config file ${configFile}: ${(e as Error).message}`)
    }
    if (typeof file !== 'object' || file === null || Array.isArray(file)) throw new ConfigError(`config file ${configFile}: must hold a JSON object`)
    for (const k of Object.keys(file)) {
      if (!SETTINGS.some((s) => s.key === k)) throw new ConfigError(`config file ${configFile}: unknown setting "${k}"`)
    }
  }
  const config = defaultConfig() as unknown as Record<string, unknown>
  for (const s of SETTINGS) {
    const raw = flags.get(s.flag) ?? env[s.env] ?? file[s.key]
    if (raw !== undefined) config[s.key] = parseValue(s, raw)
  }
  const out = { ...(config as unknown as HubConfig), ...overrides }
  out.dataDir = resolve(out.dataDir)
  if (out.azureHubName !== '') {
    // Azure's hub names: 3-50 letters, digits and hyphens, not starting or ending with a hyphen
    if (!/^[A-Za-z0-9][A-Za-z0-9-]{1,48}[A-Za-z0-9]$/.test(out.azureHubName)) throw new ConfigError(`azureHubName: must be 3-50 letters, digits and hyphens, not starting or ending with a hyphen (got ${JSON.stringify(out.azureHubName)}); ${where(SETTINGS.find((x) => x.key === 'azureHubName')!)}`)
    const named = `${out.azureHubName.toLowerCase()}.azure-devices.net`
    if (config.hostName !== 'localhost' && config.hostName !== named) throw new ConfigError(`azureHubName: sets the host name to ${named}, but hostName is also set (to ${JSON.stringify(config.hostName)}); set only one of them`)
    out.hostName = named
  }
  if (out.jwks !== '' && out.jwtIssuer === '') throw new ConfigError('jwtIssuer: --jwks needs the issuer its tokens carry; set it with --jwt-issuer, HYPERHUB_JWT_ISSUER or "jwtIssuer" in the config file')
  return out
}

export function usage(): string {
  const lines = SETTINGS.map((s) => `  ${(s.flag + ' <v>').padEnd(24)} ${s.env.padEnd(26)} ${s.help}`)
  return ['Usage: npm start -- [options]   (or npx hyperhub start [options])', '',
    '  --config <file>          HYPERHUB_CONFIG            JSON file with any of the settings below', ...lines].join('\n')
}

/** The hint printed when a listener cannot bind. */
export function portHint(key: 'mqttPort' | 'httpsPort' | 'mqttTcpPort' | 'amqpPort'): string {
  const s = SETTINGS.find((x) => x.key === key)!
  return `${where(s)}${key === 'mqttPort' || key === 'httpsPort' ? ' (ports below 1024 need root or CAP_NET_BIND_SERVICE)' : ''}`
}
