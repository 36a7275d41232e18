// The hub's embedded blob store: Azurite's blob service in a child process. A child, not in the
// hub: Azurite reads and MD5-hashes every upload with express on the event loop of the process it
// runs in (in the hub, ~0.9 s of main-thread CPU per 64 MB up and down, taken from device traffic),
// its require of ~220 packages takes ~0.65 s synchronously, it reads its account key only from
// process.env, and its logger and settings are module singletons. The price: ~60 MB more RSS.
// See bench/RESULTS.md "Blob store (Azurite child process)".
import { spawn, type ChildProcess } from 'node:child_process'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Logger } from '../log.js'
import { LogRateLimit } from '../log-rate-limit.js'
import { ensurePrivateDir, loadOrCreateAccountKey, rememberPort, rememberedPort } from './blob-store-identity.js'
import { pickFreeLoopbackPort, waitForLoopbackPort } from './loopback-port.js'
import { OutputTail } from './output-tail.js'
import { formatStorageConnectionString } from './storage-connection-string.js'

export interface BlobStoreEndpoint {
  /** DefaultEndpointsProtocol=https;AccountName=..;AccountKey=..;BlobEndpoint=https://127.0.0.1:PORT/ACCOUNT; */
  connectionString: string
  /** https://127.0.0.1:PORT/ACCOUNT (path-style, as Azurite serves it) */
  blobEndpoint: string
  /** '127.0.0.1:PORT' */
  host: string
  port: number
  accountName: string
  /** base64 */
  accountKey: string
}

export interface AzuriteProcessOptions {
  /** the hub's data directory; the store's files go in `${dataDir}/blobs` */
  dataDir: string
  /** 0: the port of the previous start if it is still free, else a free one (remembered in `${dataDir}/blobs/port`) */
  port: number
  /** PEM server certificate and key for its HTTPS (the hub's own, from ensureLocalPki) */
  certFile: string
  keyFile: string
  log: Logger
  accountName?: string
  startTimeoutMs?: number
  stopTimeoutMs?: number
  /** how long to wait for the remembered port to be free (e.g. the child of a crashed hub still closing) */
  previousPortWaitMs?: number
  /** called when the child ends without stop() being called */
  onUnexpectedExit?: (code: number | null, signal: NodeJS.Signals | null) => void
}

export const BLOB_ACCOUNT_NAME = 'hyperhub'
const HOST = '127.0.0.1'
const CHILD_SCRIPT = fileURLToPath(new URL('./azurite-child.cjs', import.meta.url))
// the entry point azurite-child.cjs requires, resolved here too so a missing install fails when the
// hub loads this module rather than later, in the child
createRequire(import.meta.url).resolve('azurite/dist/src/blob/main.js')
const READY_LINE = /successfully listens on (https?):\/\/[^\s:]+:(\d+)/
const PORT_ATTEMPTS = 3

class AzuriteStartError extends Error {
  override name = 'AzuriteStartError'
  constructor(message: string, readonly portInUse = false) { super(message) }
}

export class AzuriteProcess {
  private child?: ChildProcess
  private starting?: Promise<BlobStoreEndpoint>
  private exited?: Promise<void>
  private stopping = false
  private current?: BlobStoreEndpoint
  readonly dir: string
  private readonly accountName: string

  constructor(private readonly o: AzuriteProcessOptions) {
    this.dir = join(o.dataDir, 'blobs')
    this.accountName = o.accountName ?? BLOB_ACCOUNT_NAME
    if (!/^[a-z0-9]{3,24}$/.test(this.accountName)) throw new Error('blob store account name: 3-24 lowercase letters and digits')
  }

  get endpoint(): BlobStoreEndpoint | undefined { return this.current }
  get pid(): number | undefined { return this.child?.exitCode === null && this.child.signalCode === null ? this.child.pid : undefined }

  start(): Promise<BlobStoreEndpoint> {
    if (this.child || this.starting) return Promise.reject(new Error('blob store: already started'))
    const starting = this.doStart()
    this.starting = starting
    const clear = () => { if (this.starting === starting) this.starting = undefined }
    starting.then(clear, clear)
    return starting
  }

  private async doStart(): Promise<BlobStoreEndpoint> {
    ensurePrivateDir(this.dir)
    const accountKey = loadOrCreateAccountKey(this.dir)
    for (let attempt = 1; ; attempt++) {
      const port = await this.choosePort()
      let pid: number | undefined
      try {
        pid = await this.spawnAndWait(port, accountKey)
      } catch (e) {
        // an auto-picked port can be taken between our probe and Azurite's bind: pick again
        if (e instanceof AzuriteStartError && e.portInUse && this.o.port === 0 && attempt < PORT_ATTEMPTS) {
          this.o.log.warn('blob store port was taken before it could bind; trying another', { port })
          continue
        }
        throw e
      }
      if (this.o.port === 0) rememberPort(this.dir, port)
      const blobEndpoint = `https://${HOST}:${port}/${this.accountName}`
      this.current = {
        connectionString: formatStorageConnectionString({ accountName: this.accountName, accountKey, blobEndpoint }),
        blobEndpoint, host: `${HOST}:${port}`, port, accountName: this.accountName, accountKey,
      }
      this.o.log.info('blob store listening', { blobEndpoint, pid })
      return this.current
    }
  }

  private async choosePort(): Promise<number> {
    if (this.o.port !== 0) return this.o.port
    const previous = rememberedPort(this.dir)
    if (previous !== undefined) {
      // after a hub crash its orphaned child may still be saving and closing: give it a moment
      if (await waitForLoopbackPort(previous, this.o.previousPortWaitMs ?? 3000)) return previous
      this.o.log.warn('the blob store\'s previous port is in use; its connection string changes', { port: previous })
    }
    return pickFreeLoopbackPort()
  }

  private spawnAndWait(port: number, accountKey: string): Promise<number | undefined> {
    const log = this.o.log.child({ component: 'blob-store' })
    const redact = (s: string) => s.split(accountKey).join('[redacted]')
    const limit = new LogRateLimit(20, 10_000, (n) => log.warn('blob store output suppressed', { lines: n }))
    const stderr = new OutputTail(8192, 2048, (line) => { if (line && limit.allow()) log.warn('blob store stderr', { line: redact(line) }) })
    let onListening: ((protocol: string, port: number) => void) | undefined
    const stdout = new OutputTail(4096, 2048, (line) => {
      if (line && limit.allow()) log.debug('blob store stdout', { line: redact(line) })
      const m = READY_LINE.exec(line)
      if (m) onListening?.(m[1]!, Number(m[2]))
    })
    const args = [
      CHILD_SCRIPT,
      '--blobHost', HOST, '--blobPort', String(port), '--location', this.dir,
      '--cert', this.o.certFile, '--key', this.o.keyFile,
      '--disableTelemetry', // no Application Insights client is set up, so nothing leaves loopback
      '--silent', // no access log line per request on stdout
      '--skipApiVersionCheck', // @azure/storage-blob 12.32 sends x-ms-version 2026-04-06; Azurite 3.35 knows up to 2025-11-05
      '--loose', // ignore headers/parameters it does not implement instead of refusing the request
      '--disableProductStyleUrl', // the account is always the first path segment, as in our BlobEndpoint
    ]
    // No -d/--debug: its debug log would record every request. A minimal environment: AZURITE_DB
    // (SQL metadata) or APPLICATIONINSIGHTS_* from the hub's environment must not reach it.
    const env: NodeJS.ProcessEnv = { AZURITE_ACCOUNTS: `${this.accountName}:${accountKey}`, NODE_ENV: 'production' }
    if (process.env.PATH) env.PATH = process.env.PATH
    if (process.env.TZ) env.TZ = process.env.TZ
    const child = spawn(process.execPath, args, { cwd: this.dir, env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'], detached: false, windowsHide: true })
    this.child = child
    this.stopping = false
    child.stdout!.on('data', (c: Buffer) => stdout.push(c))
    child.stderr!.on('data', (c: Buffer) => stderr.push(c))
    child.on('message', () => {}) // nothing is expected; a listener keeps Node from buffering messages
    let readyDone = false
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => {
      if (readyDone && !this.stopping && this.child === child) {
        log.error('blob store exited unexpectedly', { code, signal, output: redact(stderr.text() || stdout.text()).slice(-2000) })
        this.current = undefined
        this.child = undefined // start() may be called again
        this.o.onUnexpectedExit?.(code, signal)
      }
      resolve()
    }))
    const timeoutMs = this.o.startTimeoutMs ?? 20_000
    return new Promise<number | undefined>((resolve, reject) => {
      const fail = (message: string) => {
        if (readyDone) return
        readyDone = true
        clearTimeout(timer)
        const output = redact([stderr.text(), stdout.text()].filter(Boolean).join('\n')).slice(-4000)
        const inUse = /EADDRINUSE/.test(output)
        this.child = undefined
        reject(new AzuriteStartError(`blob store (Azurite) ${message}${output ? `; its last output:\n${output}` : ''}`, inUse))
      }
      let timedOut = false
      const timer = setTimeout(() => {
        timedOut = true
        child.kill('SIGKILL') // its 'exit' then rejects
      }, timeoutMs)
      onListening = (protocol, listening) => {
        if (readyDone) return
        if (protocol !== 'https' || listening !== port) {
          // e.g. it could not use the certificate and fell back to plain HTTP: never serve keys in clear
          child.kill('SIGKILL')
          fail(`listened on ${protocol}://${HOST}:${listening} instead of https://${HOST}:${port}`)
          return
        }
        readyDone = true
        clearTimeout(timer)
        resolve(child.pid)
      }
      child.once('error', (e) => fail(`could not be started: ${e.message}`))
      child.once('exit', (code, signal) => fail(timedOut
        ? `did not listen on ${HOST}:${port} within ${timeoutMs} ms`
        : `exited before listening (code ${code}, signal ${signal})`))
    })
  }

  /** SIGTERM (Azurite saves its metadata and closes), then SIGKILL if it has not exited in time. */
  async stop(): Promise<void> {
    // a start in progress (e.g. a first-use start racing the hub's shutdown) finishes first, so no
    // child is spawned after stop() returned
    await this.starting?.catch(() => {})
    const child = this.child
    if (!child) return
    this.stopping = true
    this.current = undefined
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      const timeoutMs = this.o.stopTimeoutMs ?? 10_000
      let timer: NodeJS.Timeout | undefined
      const inTime = await Promise.race([
        this.exited!.then(() => true),
        new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), timeoutMs) }),
      ])
      clearTimeout(timer)
      if (!inTime) {
        this.o.log.warn('blob store did not stop in time; killing it', { pid: child.pid, timeoutMs })
        child.kill('SIGKILL')
        await this.exited
      }
    }
    this.child = undefined
  }
}
