// An in-process hub on ephemeral loopback ports with a throwaway data directory.
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import https from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { defaultConfig, type HubConfig } from '../../src/config.js'
import { startHub, type RunningHub, type StartHubOptions } from '../../src/hub.js'
import { createLogger } from '../../src/log.js'
import { createSasToken } from '../../src/auth/sas-token.js'

export const TEST_PKI = join(process.cwd(), '.test-pki')

export interface RestReply { status: number; headers: Record<string, string | string[] | undefined>; body: any; text: string }

export interface TestHub {
  hub: RunningHub
  ca: string
  dataDir: string
  policyKey(name: string): string
  serviceToken(policy?: string): string
  rest(method: string, path: string, opts?: { body?: unknown; raw?: string | Buffer; headers?: Record<string, string>; token?: string | null }): Promise<RestReply>
  createDevice(deviceId: string, extra?: Record<string, unknown>): Promise<{ deviceId: string; primaryKey: string; etag: string }>
  deviceToken(deviceId: string, key: string, ttlSeconds?: number): string
  stop(): Promise<void>
}

export function tempDir(prefix = 'hyperhub-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix))
}

/** Reuses the suite's CA so NODE_EXTRA_CA_CERTS-trusting clients accept the hub. */
export function seedPki(dataDir: string): void {
  if (existsSync(TEST_PKI)) cpSync(TEST_PKI, join(dataDir, 'tls'), { recursive: true })
}

export function testConfig(dataDir: string, overrides: Partial<HubConfig> = {}): HubConfig {
  return {
    ...defaultConfig(), hostName: 'localhost', host: '127.0.0.1', dataDir,
    mqttPort: 0, httpsPort: 0, mqttTcpPort: 0, amqpPort: 0, shards: 1, partitions: 4, logLevel: 'silent',
    // tests run their webhook receivers on 127.0.0.1
    allowPrivateWebhooks: true,
    // a hub's Azurite starts only for the tests that upload or route to storage
    blobStoreStart: 'first-use',
    // the suite runs with the default I/O threads (the core count); HYPERHUB_TEST_IO_THREADS runs it with another count
    ...(process.env.HYPERHUB_TEST_IO_THREADS !== undefined ? { ioThreads: Number(process.env.HYPERHUB_TEST_IO_THREADS) } : {}),
    ...overrides,
  }
}

export interface TestHubOptions {
  /** reuse this data directory (it is then not removed on stop) */
  dataDir?: string
  /** collect the hub's log records here */
  logRecords?: Record<string, unknown>[]
  /** overrides of the AMQP endpoint's bounds */
  amqpLimits?: StartHubOptions['amqpLimits']
  /** let the hub create its own CA instead of reusing the suite's */
  ownPki?: boolean
  /** the throttles' clock, shaping and wait (tests of tiers move time themselves) */
  throttleClock?: StartHubOptions['throttleClock']
}

export async function startTestHub(overrides: Partial<HubConfig> = {}, opts: TestHubOptions = {}): Promise<TestHub> {
  const existingDataDir = opts.dataDir
  const dataDir = existingDataDir ?? tempDir()
  if (!opts.ownPki) seedPki(dataDir)
  const log = opts.logRecords
    ? createLogger('debug', {}, (line) => { opts.logRecords!.push(JSON.parse(line) as Record<string, unknown>) })
    : createLogger((process.env.HYPERHUB_TEST_LOG as 'debug') ?? 'silent')
  const hub = await startHub(testConfig(dataDir, overrides), log, { amqpLimits: opts.amqpLimits, throttleClock: opts.throttleClock })
  const ca = readFileSync(hub.caCertFile, 'utf8')
  const policyKey = (name: string) => hub.policies.find((p) => p.keyName === name)!.primaryKey
  const serviceToken = (policy = 'iothubowner') => createSasToken(hub.config.hostName, policyKey(policy), policy)
  const rest: TestHub['rest'] = (method, path, opts = {}) => new Promise((resolve, reject) => {
    const payload = opts.raw ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body))
    const headers: Record<string, string> = { ...(payload !== undefined ? { 'Content-Type': 'application/json' } : {}), ...opts.headers }
    if (opts.token !== null) headers.Authorization = opts.token ?? serviceToken()
    const req = https.request({ host: '127.0.0.1', port: hub.ports.https, servername: 'localhost', method, path, headers, ca }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        let body: unknown = undefined
        try { body = text ? JSON.parse(text) : undefined } catch { body = text }
        resolve({ status: res.statusCode!, headers: res.headers, body, text })
      })
    })
    req.on('error', reject)
    req.end(payload)
  })
  return {
    hub, ca, dataDir, policyKey, serviceToken, rest,
    async createDevice(deviceId, extra = {}) {
      const r = await rest('PUT', `/devices/${encodeURIComponent(deviceId)}?api-version=2021-04-12`, { body: { deviceId, ...extra } })
      if (r.status !== 200) throw new Error(`create ${deviceId}: ${r.status} ${r.text}`)
      return { deviceId, primaryKey: r.body.authentication.symmetricKey.primaryKey, etag: r.body.etag }
    },
    deviceToken: (deviceId, key, ttl = 3600) => createSasToken(encodeURIComponent(`localhost/devices/${deviceId}`), key, undefined, ttl),
    async stop() {
      await hub.stop()
      if (!existingDataDir) rmSync(dataDir, { recursive: true, force: true })
    },
  }
}
