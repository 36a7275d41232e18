// The embedded blob store: Azurite's blob service as a child process, on 127.0.0.1 over HTTPS with
// the hub's certificate (seeded from .test-pki, so NODE_EXTRA_CA_CERTS lets the SDK trust it).
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmodSync, existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import {
  BlobSASPermissions, BlobServiceClient, BlockBlobClient, generateBlobSASQueryParameters, RestError, SASProtocol, StorageSharedKeyCredential,
} from '@azure/storage-blob'
import { AzuriteProcess, type BlobStoreEndpoint } from '../src/storage/azurite-process.js'
import { parseStorageConnectionString, formatStorageConnectionString } from '../src/storage/storage-connection-string.js'
import { OutputTail } from '../src/storage/output-tail.js'
import { ensureLocalPki } from '../src/tls/local-pki.js'
import { createLogger } from '../src/log.js'
import { seedPki, tempDir } from './helpers/test-hub.js'

const log = createLogger('silent')

function pkiFor(dataDir: string) {
  seedPki(dataDir)
  return ensureLocalPki(join(dataDir, 'tls'), ['localhost', '127.0.0.1'])
}

function azurite(dataDir: string, extra: Partial<ConstructorParameters<typeof AzuriteProcess>[0]> = {}): AzuriteProcess {
  const pki = pkiFor(dataDir)
  return new AzuriteProcess({ dataDir, port: 0, certFile: pki.serverCertFile, keyFile: pki.serverKeyFile, log, ...extra })
}

/** Alive and not a zombie (an orphan re-parented to a PID 1 that does not reap would linger as one). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z'
  } catch {
    return false
  }
}

/** Azurite children (alive, not zombies) serving `dataDir`, found by their command line. */
function azuriteProcessesFor(dataDir: string): number[] {
  return readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number).filter((pid) => {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
      return cmd.includes('azurite-child.cjs') && cmd.includes(join(dataDir, 'blobs')) && alive(pid)
    } catch {
      return false
    }
  })
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms
  while (alive(pid)) {
    if (Date.now() > deadline) return false
    await new Promise((r) => setTimeout(r, 25))
  }
  return true
}

async function download(service: BlobServiceClient, container: string, blob: string): Promise<Buffer> {
  return service.getContainerClient(container).getBlobClient(blob).downloadToBuffer()
}

async function restError(p: Promise<unknown>): Promise<{ status: number | undefined; code: string | undefined; message: string }> {
  try {
    await p
  } catch (e) {
    if (e instanceof RestError) return { status: e.statusCode, code: e.code, message: e.message.split('\n')[0]! }
    throw e
  }
  throw new Error('expected the request to be refused')
}

describe('embedded blob store (Azurite child process)', () => {
  let dataDir: string
  let store: AzuriteProcess
  let endpoint: BlobStoreEndpoint
  let service: BlobServiceClient
  const oneByte = Buffer.from([0xa7])
  const fiveMb = randomBytes(5 * 1024 * 1024)

  beforeAll(async () => {
    dataDir = tempDir('hyperhub-blobs-')
    store = azurite(dataDir)
    endpoint = await store.start()
    service = BlobServiceClient.fromConnectionString(endpoint.connectionString)
  })
  afterAll(async () => {
    await store?.stop()
    if (dataDir) rmSync(dataDir, { recursive: true, force: true })
  })

  it('prints a connection string for its own account, key kept owner-only', () => {
    const key = readFileSync(join(dataDir, 'blobs', 'account-key'), 'utf8').trim()
    const port = Number(readFileSync(join(dataDir, 'blobs', 'port'), 'utf8'))
    expect(Buffer.from(key, 'base64')).toHaveLength(64)
    expect(endpoint).toEqual({
      connectionString: `DefaultEndpointsProtocol=https;AccountName=hyperhub;AccountKey=${key};BlobEndpoint=https://127.0.0.1:${port}/hyperhub;`,
      blobEndpoint: `https://127.0.0.1:${port}/hyperhub`,
      host: `127.0.0.1:${port}`, port, accountName: 'hyperhub', accountKey: key,
    })
    expect(store.endpoint).toEqual(endpoint)
    expect(statSync(join(dataDir, 'blobs', 'account-key')).mode & 0o777).toBe(0o600)
    expect(statSync(join(dataDir, 'blobs')).mode & 0o777).toBe(0o700)
    // no telemetry instance id: Azurite writes one only when it sets up Application Insights
    expect(existsSync(join(dataDir, 'blobs', 'AzuriteConfig'))).toBe(false)
  })

  it('stores a 1-byte blob (single put) and a 5 MB blob (five staged blocks) and reads them back byte-exact', async () => {
    const container = service.getContainerClient('uploads')
    expect((await container.create()).errorCode).toBeUndefined()
    await container.getBlockBlobClient('one-byte').uploadData(oneByte)
    // below maxSingleShotSize the SDK does one Put Blob; this forces Put Block x5 + Put Block List
    await container.getBlockBlobClient('five-mb').uploadData(fiveMb, { maxSingleShotSize: 1024 * 1024, blockSize: 1024 * 1024 })
    expect((await container.getBlockBlobClient('five-mb').getBlockList('committed')).committedBlocks?.map((b) => b.size)).toEqual([1048576, 1048576, 1048576, 1048576, 1048576])
    expect((await download(service, 'uploads', 'one-byte')).equals(oneByte)).toBe(true)
    expect((await download(service, 'uploads', 'five-mb')).equals(fiveMb)).toBe(true)
    const listed: [string, number | undefined][] = []
    for await (const b of container.listBlobsFlat()) listed.push([b.name, b.properties.contentLength])
    expect(listed).toEqual([['five-mb', 5242880], ['one-byte', 1]])
  })

  it('serves blob SAS URLs (sr=b&sp=rw), and a read-only SAS cannot write', async () => {
    const credential = new StorageSharedKeyCredential(endpoint.accountName, endpoint.accountKey)
    const sas = (permissions: string) => generateBlobSASQueryParameters({
      containerName: 'uploads', blobName: 'via-sas', permissions: BlobSASPermissions.parse(permissions),
      expiresOn: new Date(Date.now() + 3_600_000), protocol: SASProtocol.Https,
    }, credential).toString()
    const rw = sas('rw')
    expect(new URLSearchParams(rw).get('sr')).toBe('b')
    expect(new URLSearchParams(rw).get('sp')).toBe('rw')
    const viaSas = new BlockBlobClient(`${endpoint.blobEndpoint}/uploads/via-sas?${rw}`) // no key: the SAS alone
    await viaSas.upload('hello from a device', 19)
    expect((await viaSas.downloadToBuffer()).toString()).toBe('hello from a device')
    const readOnly = new BlockBlobClient(`${endpoint.blobEndpoint}/uploads/via-sas?${sas('r')}`)
    expect((await readOnly.downloadToBuffer()).toString()).toBe('hello from a device')
    expect(await restError(readOnly.upload('overwrite', 9))).toMatchObject({ status: 403, code: 'AuthorizationPermissionMismatch' })
  })

  // Azure answers a bad SharedKey signature with 403 AuthenticationFailed; Azurite 3.35 sends 403 with
  // Azure's AuthenticationFailed message but the code AuthorizationFailure.
  it('refuses a wrong account key, no key, and the emulator\'s well-known account', async () => {
    const wrong = BlobServiceClient.fromConnectionString(formatStorageConnectionString({ ...endpoint, accountKey: randomBytes(64).toString('base64') }))
    const refused = { status: 403, code: 'AuthorizationFailure', message: 'Server failed to authenticate the request. Make sure the value of the Authorization header is formed correctly including the signature.' }
    expect(await restError(wrong.getContainerClient('uploads').getBlockBlobClient('one-byte').upload('x', 1))).toEqual(refused)
    expect(await restError(wrong.listContainers().next())).toEqual(refused)
    const anonymous = new BlobServiceClient(endpoint.blobEndpoint)
    expect(await restError(anonymous.getContainerClient('uploads').getBlobClient('one-byte').download())).toEqual(refused)
    // AZURITE_ACCOUNTS replaces the default devstoreaccount1, whose key is public
    const dev = BlobServiceClient.fromConnectionString(formatStorageConnectionString({
      ...parseStorageConnectionString('UseDevelopmentStorage=true'), blobEndpoint: `https://${endpoint.host}/devstoreaccount1`,
    }))
    expect(await restError(dev.listContainers().next())).toEqual({ status: 404, code: 'ResourceNotFound', message: 'The specified resource does not exist.' })
  })

  it('restarts on the same data dir with the same connection string and its blobs', async () => {
    const pid = store.pid!
    await store.stop()
    expect(store.pid).toBeUndefined()
    expect(store.endpoint).toBeUndefined()
    expect(alive(pid)).toBe(false)
    store = azurite(dataDir)
    const again = await store.start()
    expect(again.connectionString).toBe(endpoint.connectionString)
    expect(store.pid).not.toBe(pid)
    const svc = BlobServiceClient.fromConnectionString(again.connectionString)
    expect((await download(svc, 'uploads', 'one-byte')).equals(oneByte)).toBe(true)
    expect((await download(svc, 'uploads', 'five-mb')).equals(fiveMb)).toBe(true)
    expect((await download(svc, 'uploads', 'via-sas')).toString()).toBe('hello from a device')
  })

  it('waits briefly for its remembered port (a crashed hub\'s child may still be closing), then moves and remembers the new one', async () => {
    const taken = endpoint.port
    await store.stop()
    const squat = async (releaseAfterMs?: number): Promise<Server> => {
      const server = createServer()
      await new Promise<void>((resolve) => server.listen(taken, '127.0.0.1', resolve))
      if (releaseAfterMs !== undefined) setTimeout(() => server.close(), releaseAfterMs)
      return server
    }
    await squat(500)
    store = azurite(dataDir)
    expect((await store.start()).connectionString).toBe(endpoint.connectionString)
    await store.stop()
    const squatter = await squat()
    try {
      store = azurite(dataDir, { previousPortWaitMs: 300 })
      const moved = await store.start()
      expect(moved.port).not.toBe(taken)
      expect(Number(readFileSync(join(dataDir, 'blobs', 'port'), 'utf8'))).toBe(moved.port)
      expect(moved.connectionString).toBe(endpoint.connectionString.replace(`:${taken}/`, `:${moved.port}/`))
    } finally {
      await new Promise((resolve) => squatter.close(resolve))
    }
  })
})

describe('blob store process lifetime', () => {
  it('does not outlive a hub that is SIGKILLed, and saves what it had on the way out', async () => {
    const dataDir = tempDir('hyperhub-blobs-')
    const pki = pkiFor(dataDir)
    // a stand-in hub: starts the store, prints its pid and connection string, then waits to be killed
    const script = `
      const { AzuriteProcess } = await import(${JSON.stringify(new URL('../src/storage/azurite-process.ts', import.meta.url).href)})
      const { createLogger } = await import(${JSON.stringify(new URL('../src/log.ts', import.meta.url).href)})
      const store = new AzuriteProcess({ dataDir: ${JSON.stringify(dataDir)}, port: 0, certFile: ${JSON.stringify(pki.serverCertFile)}, keyFile: ${JSON.stringify(pki.serverKeyFile)}, log: createLogger('silent') })
      const ep = await store.start()
      console.log(JSON.stringify({ pid: store.pid, cs: ep.connectionString }))
      setInterval(() => {}, 1000)`
    const hub = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
    const hubExited = new Promise((resolve) => hub.once('exit', resolve))
    let pid: number | undefined
    try {
      const line = await new Promise<string>((resolve, reject) => {
        let out = ''
        hub.stdout!.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('\n')) resolve(out.trim()) })
        hub.once('exit', (code) => reject(new Error(`stand-in hub exited with ${code}: ${out}`)))
      })
      const started = JSON.parse(line) as { pid: number; cs: string }
      pid = started.pid
      expect(alive(pid)).toBe(true)
      // written less than LokiJS's 5 s autosave before the kill: kept only if the child shuts down cleanly
      await BlobServiceClient.fromConnectionString(started.cs).createContainer('made-before-the-kill')
      hub.kill('SIGKILL')
      await hubExited
      expect(await waitGone(pid, 8000)).toBe(true)
      const store = azurite(dataDir)
      try {
        const ep = await store.start()
        expect(ep.connectionString).toBe(started.cs)
        const names: string[] = []
        for await (const c of BlobServiceClient.fromConnectionString(ep.connectionString).listContainers()) names.push(c.name)
        expect(names).toEqual(['made-before-the-kill'])
      } finally {
        await store.stop()
      }
    } finally {
      if (hub.exitCode === null && hub.signalCode === null) hub.kill('SIGKILL')
      if (pid !== undefined && alive(pid)) process.kill(pid, 'SIGKILL')
      rmSync(dataDir, { recursive: true, force: true })
    }
  })

  it('reports a child that dies, and starts again on the same connection string', async () => {
    const dataDir = tempDir('hyperhub-blobs-')
    const exits: [number | null, string | null][] = []
    let store: AzuriteProcess | undefined
    try {
      store = azurite(dataDir, { onUnexpectedExit: (code, signal) => exits.push([code, signal]) })
      const first = await store.start()
      const pid = store.pid!
      process.kill(pid, 'SIGKILL')
      expect(await waitGone(pid, 5000)).toBe(true)
      await vi.waitFor(() => expect(exits).toEqual([[null, 'SIGKILL']]))
      expect(store.endpoint).toBeUndefined()
      expect(store.pid).toBeUndefined()
      const again = await store.start()
      expect(again.connectionString).toBe(first.connectionString)
      await BlobServiceClient.fromConnectionString(again.connectionString).createContainer('after-the-crash')
      await store.stop()
      expect(exits).toHaveLength(1) // a stop() is not reported
    } finally {
      await store?.stop()
      rmSync(dataDir, { recursive: true, force: true })
    }
  })

  it('a stop() during start() leaves no child behind', async () => {
    const dataDir = tempDir('hyperhub-blobs-')
    try {
      for (const delayMs of [0, 300]) {
        const store = azurite(dataDir)
        const started = store.start().then(() => 'started', (e: Error) => e.message)
        await new Promise((r) => setTimeout(r, delayMs))
        await store.stop()
        expect(await started).toBe('started') // stop() lets the start finish, then stops what it started
        expect(store.pid).toBeUndefined()
        expect(azuriteProcessesFor(dataDir)).toEqual([])
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true })
    }
  })

  it('reports a child that exits before listening, with its output and without the key', async () => {
    const dataDir = tempDir('hyperhub-blobs-')
    try {
      const store = azurite(dataDir, { certFile: join(dataDir, 'no-such-cert.pem') })
      const err = await store.start().then(() => undefined, (e: Error) => e)
      const key = readFileSync(join(dataDir, 'blobs', 'account-key'), 'utf8').trim()
      expect(err?.message).toMatch(/^blob store \(Azurite\) exited before listening \(code 1, signal null\); its last output:\n[^]*no-such-cert\.pem/)
      expect(err?.message).not.toContain(key)
      expect(store.pid).toBeUndefined()
    } finally {
      rmSync(dataDir, { recursive: true, force: true })
    }
  })

  it('keeps an existing key file and tightens its mode; refuses a damaged one', async () => {
    const dataDir = tempDir('hyperhub-blobs-')
    try {
      const key = randomBytes(64).toString('base64')
      const store = azurite(dataDir)
      const blobs = join(dataDir, 'blobs')
      // first start creates the directory; then swap in a key restored with a loose mode
      await store.start()
      await store.stop()
      writeFileSync(join(blobs, 'account-key'), key + '\n')
      chmodSync(join(blobs, 'account-key'), 0o644)
      const ep = await store.start()
      expect(ep.accountKey).toBe(key)
      expect(statSync(join(blobs, 'account-key')).mode & 0o777).toBe(0o600)
      await store.stop()
      writeFileSync(join(blobs, 'account-key'), 'not a key\n')
      await expect(store.start()).rejects.toThrow(`${join(blobs, 'account-key')} does not hold a 64-byte base64 key; remove it to make a new one (clients then need the new connection string)`)
    } finally {
      rmSync(dataDir, { recursive: true, force: true })
    }
  })
})

describe('parseStorageConnectionString', () => {
  const key = Buffer.alloc(64, 7).toString('base64')

  it('reads the Azure portal form', () => {
    expect(parseStorageConnectionString(`DefaultEndpointsProtocol=https;AccountName=acme01;AccountKey=${key};EndpointSuffix=core.windows.net`))
      .toEqual({ accountName: 'acme01', accountKey: key, blobEndpoint: 'https://acme01.blob.core.windows.net' })
    expect(parseStorageConnectionString(`AccountName=acme01;AccountKey=${key}`).blobEndpoint).toBe('https://acme01.blob.core.windows.net')
    expect(parseStorageConnectionString(`DefaultEndpointsProtocol=https;AccountName=acme01;AccountKey=${key};EndpointSuffix=core.chinacloudapi.cn`).blobEndpoint)
      .toBe('https://acme01.blob.core.chinacloudapi.cn')
  })

  it('reads the BlobEndpoint form, and its own output', () => {
    const own = `DefaultEndpointsProtocol=https;AccountName=hyperhub;AccountKey=${key};BlobEndpoint=https://127.0.0.1:41234/hyperhub;`
    expect(parseStorageConnectionString(own)).toEqual({ accountName: 'hyperhub', accountKey: key, blobEndpoint: 'https://127.0.0.1:41234/hyperhub' })
    expect(formatStorageConnectionString(parseStorageConnectionString(own))).toBe(own)
    expect(parseStorageConnectionString(`accountname=acme01;accountkey=${key};blobendpoint=https://blobs.example.com/`).blobEndpoint).toBe('https://blobs.example.com')
  })

  it('refuses what it cannot use, without echoing the key', () => {
    const cases: [string, string][] = [
      [`AccountKey=${key}`, 'storage connection string: AccountName is missing'],
      ['AccountName=acme01;SharedAccessSignature=sv=2020&sig=abc', 'storage connection string: AccountKey is missing (SAS-only connection strings are not supported)'],
      ['AccountName=acme01;AccountKey=not*base64', 'storage connection string: AccountKey is not base64'],
      [`AccountName=acme01;AccountKey=${key};BlobEndpoint=ftp://x`, 'storage connection string: BlobEndpoint must be http(s)'],
      [`AccountName=acme01;AccountKey=${key};AccountKey=${key}`, 'storage connection string: AccountKey is given twice'],
      ['just some text', 'storage connection string: every part must be Name=Value'],
    ]
    for (const [input, message] of cases) expect(() => parseStorageConnectionString(input)).toThrow(message)
    for (const [input] of cases) {
      try { parseStorageConnectionString(input) } catch (e) { expect((e as Error).message).not.toContain(key) }
    }
  })
})

describe('OutputTail (the child\'s stdout/stderr)', () => {
  it('keeps only the last few KB, cuts a line that never ends, and still sees every line', () => {
    const seen: string[] = []
    const tail = new OutputTail(100, 20, (line) => seen.push(line))
    for (let i = 0; i < 10_000; i++) tail.push(`line ${i}\n`)
    expect(seen).toHaveLength(10_000)
    expect(tail.text().length).toBeLessThanOrEqual(100)
    expect(tail.text().endsWith('line 9998\nline 9999')).toBe(true)
    tail.push('x'.repeat(1_000_000))
    expect(seen.at(-1)).toBe('x'.repeat(20) + '…')
    tail.push('yyy\r\n')
    expect(seen.at(-1)).toBe('yyy')
    expect(tail.text().length).toBeLessThanOrEqual(100)
  })
})
