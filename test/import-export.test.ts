// Import and export jobs (v1 jobs API) over REST on hubs on ephemeral ports: an export to the first
// hub's embedded blob store and an import of that file into a fresh hub reproduce devices, modules,
// keys, status, edge parents and twins (tags, desired). Bad input: a second job while one runs
// (429004), expired and read-only SAS URIs (400008), a missing input blob and a SAS the store
// refuses (failed jobs with the store's answer), broken lines (each in importErrors.log, the rest
// imported), an import with RegistryRead only (401), cancel, and a job the hub stopped under.
import { rmSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  BlobServiceClient, ContainerSASPermissions, generateBlobSASQueryParameters, SASProtocol, StorageSharedKeyCredential, type ContainerClient,
} from '@azure/storage-blob'
import { openHubStore } from '../src/store/hub-store.js'
import { parseStorageConnectionString } from '../src/storage/storage-connection-string.js'
import { startTestHub, tempDir, type RestReply, type TestHub } from './helpers/test-hub.js'
import { until } from './helpers/device-mqtt.js'

const V = 'api-version=2021-04-12'
let a: TestHub
let b: TestHub
let service: BlobServiceClient
let credential: StorageSharedKeyCredential

beforeAll(async () => {
  if (!process.env.NODE_EXTRA_CA_CERTS) throw new Error('run with NODE_EXTRA_CA_CERTS=.test-pki/ca.pem: the test reads the blob store with @azure/storage-blob')
  ;[a, b] = await Promise.all([startTestHub(), startTestHub()])
  // the first hub's store holds every container; the second hub reaches it on loopback (allowPrivateWebhooks in test hubs)
  await a.hub.blobStore.open()
  const account = parseStorageConnectionString(a.hub.blobStore.connectionString!)
  credential = new StorageSharedKeyCredential(account.accountName, account.accountKey)
  service = BlobServiceClient.fromConnectionString(a.hub.blobStore.connectionString!)
}, 60_000)
afterAll(async () => { await Promise.all([a?.stop(), b?.stop()]) })

async function container(name: string): Promise<ContainerClient> {
  const c = service.getContainerClient(name)
  await c.createIfNotExists()
  return c
}

/** A container URL with a SAS, as a user hands it to a job. */
function sas(c: ContainerClient, permissions = 'rwdl', expiresOn = new Date(Date.now() + 3600_000), key?: StorageSharedKeyCredential): string {
  const q = generateBlobSASQueryParameters({ containerName: c.containerName, permissions: ContainerSASPermissions.parse(permissions), expiresOn, protocol: SASProtocol.Https }, key ?? credential)
  return `${c.url}?${q.toString()}`
}

const create = (t: TestHub, body: unknown, token?: string) => t.rest('POST', `/jobs/create?${V}`, { body, ...(token ? { token } : {}) })
const getJob = (t: TestHub, id: string) => t.rest('GET', `/jobs/${id}?${V}`)
const err = (r: RestReply) => ({ status: r.status, code: r.headers['iothub-errorcode'], message: r.body?.Message })
async function ended(t: TestHub, id: string, timeoutMs = 30_000): Promise<any> {
  const r = await until(() => getJob(t, id), (j) => ['completed', 'failed', 'cancelled'].includes(j.body?.status), timeoutMs)
  return r.body
}
async function text(c: ContainerClient, blob: string): Promise<string> {
  return (await c.getBlockBlobClient(blob).downloadToBuffer()).toString('utf8')
}
const lines = (s: string) => s.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l))
const values = (section: Record<string, unknown>) => Object.fromEntries(Object.entries(section).filter(([k]) => !k.startsWith('$')))
async function upload(c: ContainerClient, blob: string, content: string): Promise<void> {
  await c.getBlockBlobClient(blob).upload(content, Buffer.byteLength(content))
}

describe('export then import into a fresh hub', () => {
  it('reproduces devices, modules, keys, status, edge parents and twins (tags and desired)', async () => {
    await a.createDevice('ie-plain')
    await a.createDevice('ie-disabled', { status: 'disabled', statusReason: 'retired' })
    await a.createDevice('ie-x509', { authentication: { type: 'selfSigned', x509Thumbprint: { primaryThumbprint: 'A'.repeat(40), secondaryThumbprint: null } } })
    const edge = (await a.rest('PUT', `/devices/ie-edge?${V}`, { body: { deviceId: 'ie-edge', capabilities: { iotEdge: true } } })).body
    await a.createDevice('ie-leaf', { parentScopes: [edge.deviceScope] })
    expect((await a.rest('PATCH', `/twins/ie-plain?${V}`, { body: { tags: { site: 'lab', floor: { n: 2 } }, properties: { desired: { rate: 5, mode: { fast: true } } } } })).status).toBe(200)
    expect((await a.rest('PUT', `/devices/ie-plain/modules/m1?${V}`, { body: { managedBy: 'ops' } })).status).toBe(200)
    expect((await a.rest('PATCH', `/twins/ie-plain/modules/m1?${V}`, { body: { tags: { role: 'sensor' }, properties: { desired: { gain: 3 } } } })).status).toBe(200)

    const out = await container('ie-roundtrip')
    const started = await create(a, { type: 'export', outputBlobContainerUri: sas(out), excludeKeysInExport: false })
    expect(started.status).toBe(200)
    expect(started.body).toMatchObject({ type: 'export', status: 'enqueued', progress: 0, outputBlobName: 'devices.txt', excludeKeysInExport: false, storageAuthenticationType: 'keyBased' })
    expect(started.body.jobId).toMatch(/^[0-9a-f-]{36}$/)
    // the SAS is a secret: the job answers the container without it
    expect(started.body.outputBlobContainerUri).toBe(out.url)
    const exported = await ended(a, started.body.jobId)
    expect(exported).toMatchObject({ status: 'completed', progress: 100, statusMessage: 'exported 5 devices and 1 modules' })
    expect(exported.endTimeUtc).toEqual(expect.any(String))

    const file = lines(await text(out, 'devices.txt'))
    // edge devices first, so an import meets the parent before its child
    expect(file[0].id).toBe('ie-edge')
    const plain = file.find((l) => l.id === 'ie-plain' && l.moduleId === undefined)
    const aPlain = (await a.rest('GET', `/devices/ie-plain?${V}`)).body
    const aTwin = (await a.rest('GET', `/twins/ie-plain?${V}`)).body
    expect(plain).toEqual({
      id: 'ie-plain', eTag: aPlain.etag, status: 'enabled', authentication: aPlain.authentication, twinETag: aTwin.etag,
      tags: { site: 'lab', floor: { n: 2 } }, properties: { desired: aTwin.properties.desired, reported: aTwin.properties.reported }, capabilities: { iotEdge: false },
    })
    expect(plain.properties.desired).toMatchObject({ rate: 5, $version: 2, $metadata: { rate: { $lastUpdated: expect.any(String) } } })
    // a device's modules follow it
    expect(file[file.indexOf(plain) + 1]).toMatchObject({ id: 'ie-plain', moduleId: 'm1', managedBy: 'ops', tags: { role: 'sensor' }, properties: { desired: { gain: 3 } } })

    const imported = await create(b, { type: 'import', inputBlobContainerUri: sas(out, 'rl'), outputBlobContainerUri: sas(out, 'w') })
    expect(imported.body).toMatchObject({ type: 'import', status: 'enqueued', inputBlobName: 'devices.txt', outputBlobName: 'importErrors.log' })
    expect(await ended(b, imported.body.jobId)).toMatchObject({ status: 'completed', progress: 100, statusMessage: 'imported 6 of 6 lines; 0 failed' })
    expect(await text(out, 'importErrors.log')).toBe('')

    for (const id of ['ie-plain', 'ie-disabled', 'ie-x509', 'ie-edge', 'ie-leaf']) {
      const [da, db] = await Promise.all([a.rest('GET', `/devices/${id}?${V}`), b.rest('GET', `/devices/${id}?${V}`)])
      const same = (d: any) => ({ status: d.status, statusReason: d.statusReason, authentication: d.authentication, capabilities: d.capabilities })
      expect({ id, ...same(db.body) }).toEqual({ id, ...same(da.body) })
      const [ta, tb] = await Promise.all([a.rest('GET', `/twins/${id}?${V}`), b.rest('GET', `/twins/${id}?${V}`)])
      expect({ id, tags: tb.body.tags, desired: values(tb.body.properties.desired) }).toEqual({ id, tags: ta.body.tags, desired: values(ta.body.properties.desired) })
    }
    // the fresh hub gives the edge device its own scope, and the child names that one
    const bEdge = (await b.rest('GET', `/devices/ie-edge?${V}`)).body
    expect(bEdge.deviceScope).not.toBe(edge.deviceScope)
    expect((await b.rest('GET', `/devices/ie-leaf?${V}`)).body).toMatchObject({ parentScopes: [bEdge.deviceScope], deviceScope: bEdge.deviceScope })
    const [ma, mb] = await Promise.all([a.rest('GET', `/devices/ie-plain/modules/m1?${V}`), b.rest('GET', `/devices/ie-plain/modules/m1?${V}`)])
    expect({ auth: mb.body.authentication, managedBy: mb.body.managedBy }).toEqual({ auth: ma.body.authentication, managedBy: 'ops' })
    const mt = (await b.rest('GET', `/twins/ie-plain/modules/m1?${V}`)).body
    expect({ tags: mt.tags, desired: values(mt.properties.desired) }).toEqual({ tags: { role: 'sensor' }, desired: { gain: 3 } })
    // listed, newest last
    const listed = (await b.rest('GET', `/jobs?${V}`)).body as any[]
    expect(listed.map((j) => j.jobId)).toContain(imported.body.jobId)
  })

  it('with includeConfigurations exports configurations to configurations.txt and imports them; a bad line is reported', async () => {
    const cfg = { content: { deviceContent: { 'properties.desired.mode': 'eco' } }, targetCondition: "tags.site = 'lab'", priority: 3, labels: { team: 'ops' },
      metrics: { queries: { eco: "SELECT deviceId FROM devices WHERE properties.reported.mode = 'eco'" } } }
    expect((await a.rest('PUT', `/configurations/ie-cfg?${V}`, { body: cfg })).status).toBe(200)
    const out = await container('ie-configurations')
    const job = (await create(a, { type: 'export', outputBlobContainerUri: sas(out), excludeKeysInExport: false, includeConfigurations: true })).body
    expect(job).toMatchObject({ includeConfigurations: true, configurationsBlobName: 'configurations.txt' })
    expect((await ended(a, job.jobId)).statusMessage).toMatch(/^exported \d+ devices and \d+ modules and 1 configurations$/)
    const [line] = lines(await text(out, 'configurations.txt'))
    expect(line).toMatchObject({ id: 'ie-cfg', ...cfg, metrics: { queries: cfg.metrics.queries } })
    // the file as exported, plus a line that does not parse and one whose query is invalid
    await upload(out, 'configurations.txt', [JSON.stringify(line), '{not json', JSON.stringify({ ...line, id: 'ie-cfg-bad', targetCondition: 'tags.a = = 1' })].join('\n') + '\n')
    await upload(out, 'nothing.txt', '')
    const imported = (await create(b, { type: 'import', inputBlobContainerUri: sas(out), outputBlobContainerUri: sas(out), inputBlobName: 'nothing.txt', includeConfigurations: true })).body
    expect((await ended(b, imported.jobId)).statusMessage).toBe('imported 0 of 0 lines; 0 failed; configurations: imported 1 of 3; 2 failed')
    expect(lines(await text(out, 'importErrors.log'))).toEqual([
      { errorCode: 'DeserializationError', errorStatus: 'the line is not valid JSON', lineNumber: 2 },
      { configurationId: 'ie-cfg-bad', errorCode: 'ArgumentInvalid', errorStatus: expect.stringContaining('The query is invalid'), lineNumber: 3 },
    ])
    const got = (await b.rest('GET', `/configurations/ie-cfg?${V}`)).body
    expect(got).toMatchObject({ id: 'ie-cfg', ...cfg, metrics: { queries: cfg.metrics.queries } })
    expect((await b.rest('GET', `/configurations/ie-cfg-bad?${V}`)).status).toBe(404)
  })

  it('with excludeKeysInExport writes null keys, and the import gives those devices new keys', async () => {
    const { primaryKey } = await a.createDevice('ie-keyless')
    const out = await container('ie-keyless')
    const job = (await create(a, { type: 'export', outputBlobContainerUri: sas(out), excludeKeysInExport: true, outputBlobName: 'nokeys.txt' })).body
    expect(job.outputBlobName).toBe('nokeys.txt')
    expect((await ended(a, job.jobId)).status).toBe('completed')
    const line = lines(await text(out, 'nokeys.txt')).find((l) => l.id === 'ie-keyless')
    expect(line.authentication.symmetricKey).toEqual({ primaryKey: null, secondaryKey: null })
    // only this device goes to the fresh hub
    await upload(out, 'one.txt', JSON.stringify(line) + '\n')
    const imported = (await create(b, { type: 'import', inputBlobContainerUri: sas(out), outputBlobContainerUri: sas(out), inputBlobName: 'one.txt' })).body
    expect((await ended(b, imported.jobId)).status).toBe('completed')
    const key = (await b.rest('GET', `/devices/ie-keyless?${V}`)).body.authentication.symmetricKey.primaryKey
    expect(key).toMatch(/^[A-Za-z0-9+/]{43}=$/)
    expect(key).not.toBe(primaryKey)
  })
})

describe('import errors', () => {
  it('reports each broken line in importErrors.log, by line number, and imports the rest', async () => {
    await b.createDevice('ie-exists')
    const c = await container('ie-broken')
    const file = [
      JSON.stringify({ id: 'ie-ok-1', status: 'enabled', tags: { batch: 'broken' } }),
      '{"id": "ie-half", "status": ',
      '',
      JSON.stringify({ id: 'ie-ok-2', importMode: 'create', properties: { desired: { x: 1 } } }),
      JSON.stringify({ id: 'ie-exists', importMode: 'Create' }),
      JSON.stringify({ id: 'bad id', status: 'enabled' }),
      '[1, 2]',
      JSON.stringify({ id: 'ie-ok-3', importMode: 'replaceEverything' }),
      JSON.stringify({ id: 'ie-ok-3', status: 'disabled' }),
      JSON.stringify({ id: 'ie-missing', importMode: 'update' }),
      // past the 512 KiB bound: reported, never held whole
      JSON.stringify({ id: 'ie-huge', tags: { pad: 'x'.repeat(600 * 1024) } }),
      JSON.stringify({ id: 'ie-after-huge' }),
    ].join('\r\n')
    await upload(c, 'devices.txt', file)
    const job = (await create(b, { type: 'import', inputBlobContainerUri: sas(c), outputBlobContainerUri: sas(c) })).body
    expect(await ended(b, job.jobId)).toMatchObject({ status: 'completed', statusMessage: 'imported 4 of 11 lines; 7 failed (see importErrors.log)' })
    expect(lines(await text(c, 'importErrors.log'))).toEqual([
      { deviceId: '', errorCode: 'DeserializationError', errorStatus: 'the line is not valid JSON', lineNumber: 2 },
      { deviceId: 'ie-exists', errorCode: 'DeviceAlreadyExists', errorStatus: "A device with ID 'ie-exists' is already registered.", lineNumber: 5 },
      { deviceId: 'bad id', errorCode: 'ArgumentInvalid', errorStatus: expect.stringMatching(/^DeviceId "bad id" is invalid/), lineNumber: 6 },
      { deviceId: '', errorCode: 'ArgumentInvalid', errorStatus: 'the line must be a JSON object (an ExportImportDevice)', lineNumber: 7 },
      { deviceId: 'ie-ok-3', errorCode: 'ArgumentInvalid', errorStatus: expect.stringMatching(/^importMode "replaceEverything" is not one of /), lineNumber: 8 },
      { deviceId: 'ie-missing', errorCode: 'DeviceNotFound', errorStatus: 'Device ie-missing not registered', lineNumber: 10 },
      { deviceId: '', errorCode: 'ArgumentInvalid', errorStatus: 'the line is longer than 524288 bytes', lineNumber: 11 },
    ])
    expect((await b.rest('GET', `/devices/ie-after-huge?${V}`)).status).toBe(200)
    expect((await b.rest('GET', `/twins/ie-ok-1?${V}`)).body.tags).toEqual({ batch: 'broken' })
    expect((await b.rest('GET', `/twins/ie-ok-2?${V}`)).body.properties.desired.x).toBe(1)
    expect((await b.rest('GET', `/devices/ie-ok-3?${V}`)).body.status).toBe('disabled')
    expect((await b.rest('GET', `/devices/ie-half?${V}`)).status).toBe(404)
  })

  it('fails the job with the store\'s answer when the input blob is missing or the store refuses the SAS', async () => {
    const c = await container('ie-empty')
    const missing = (await create(b, { type: 'import', inputBlobContainerUri: sas(c), outputBlobContainerUri: sas(c), inputBlobName: 'nothing.txt' })).body
    expect(await ended(b, missing.jobId)).toMatchObject({
      status: 'failed', failureReason: 'the import could not read nothing.txt from the input container: the blob store answered 404 BlobNotFound',
    })
    const forged = sas(c, 'rwdl', undefined, new StorageSharedKeyCredential(credential.accountName, Buffer.alloc(64, 7).toString('base64')))
    const refused = (await create(a, { type: 'export', outputBlobContainerUri: forged, excludeKeysInExport: true })).body
    expect(await ended(a, refused.jobId)).toMatchObject({
      status: 'failed', failureReason: 'the export could not write devices.txt to the output container: the blob store answered 403 AuthorizationFailure',
    })
  })
})

describe('refused before a job exists', () => {
  it('refuses an expired SAS and one without write for the output, with 400008 and the reason', async () => {
    const c = await container('ie-refused')
    const before = (await a.rest('GET', `/jobs?${V}`)).body.length
    const expired = await create(a, { type: 'export', outputBlobContainerUri: sas(c, 'rwdl', new Date('2020-01-02T03:04:05Z')), excludeKeysInExport: false })
    expect(err(expired)).toEqual({
      status: 400, code: 'BlobContainerValidationError',
      message: 'ErrorCode:BlobContainerValidationError;outputBlobContainerUri: its SAS expired at 2020-01-02T03:04:05.000Z; give one that is still valid',
    })
    const readOnly = await create(a, { type: 'export', outputBlobContainerUri: sas(c, 'rl'), excludeKeysInExport: false })
    expect(err(readOnly)).toEqual({
      status: 400, code: 'BlobContainerValidationError',
      message: 'ErrorCode:BlobContainerValidationError;outputBlobContainerUri: its SAS grants sp=rl, but an export writes devices.txt there: it needs write (w)',
    })
    const importReadOnly = await create(a, { type: 'import', inputBlobContainerUri: sas(c, 'r'), outputBlobContainerUri: sas(c, 'r') })
    expect(err(importReadOnly).message).toBe('ErrorCode:BlobContainerValidationError;outputBlobContainerUri: its SAS grants sp=r, but an import writes importErrors.log there: it needs write (w)')
    const noSas = await create(a, { type: 'export', outputBlobContainerUri: c.url })
    expect(err(noSas).message).toMatch(/^ErrorCode:BlobContainerValidationError;outputBlobContainerUri has no SAS/)
    expect(err(await create(a, { type: 'import', inputBlobContainerUri: sas(c), outputBlobContainerUri: sas(c), storageAuthenticationType: 'identityBased' })).code).toBe('ManagedIdentityNotEnabled')
    expect(err(await create(a, { type: 'scheduleUpdateTwin' })).code).toBe('ArgumentInvalid')
    expect((await a.rest('GET', `/jobs?${V}`)).body.length).toBe(before)
  })

  it('an import needs RegistryWrite; an export RegistryRead', async () => {
    const c = await container('ie-rights')
    const readOnly = a.serviceToken('registryRead')
    const r = await create(a, { type: 'import', inputBlobContainerUri: sas(c), outputBlobContainerUri: sas(c) }, readOnly)
    expect(err(r)).toEqual({ status: 401, code: 'IotHubUnauthorized', message: "ErrorCode:IotHubUnauthorized;Authorization rule 'registryRead' does not allow access for 'RegistryWrite'" })
    const exp = await create(a, { type: 'export', outputBlobContainerUri: sas(c), excludeKeysInExport: true }, readOnly)
    expect(exp.status).toBe(200)
    expect((await ended(a, exp.body.jobId)).status).toBe('completed')
  })

  it('answers an unknown job with 404002 JobNotFound', async () => {
    expect(err(await getJob(a, 'no-such-job'))).toEqual({ status: 404, code: 'JobNotFound', message: 'ErrorCode:JobNotFound;Job no-such-job not found' })
    expect(err(await a.rest('DELETE', `/jobs/no-such-job?${V}`)).code).toBe('JobNotFound')
  })
})

/** A file long enough that its import is still running when the next request arrives. */
async function longFile(c: ContainerClient, prefix: string, count: number): Promise<void> {
  const body = Array.from({ length: count }, (_, i) => JSON.stringify({ id: `${prefix}-${i}`, status: 'enabled', tags: { n: i } })).join('\n')
  await upload(c, 'devices.txt', body)
}

describe('one job at a time', () => {
  it('refuses a second job while one runs with 429004, cancels the first, then takes a new one', async () => {
    const c = await container('ie-one-at-a-time')
    await longFile(c, 'ie-long', 20_000)
    const first = (await create(b, { type: 'import', inputBlobContainerUri: sas(c), outputBlobContainerUri: sas(c) })).body
    await until(() => getJob(b, first.jobId), (r) => r.body.status === 'running')
    const second = await create(b, { type: 'export', outputBlobContainerUri: sas(c), excludeKeysInExport: true })
    expect(err(second)).toEqual({
      status: 429, code: 'ThrottlingMaxActiveJobCountExceeded',
      message: `ErrorCode:ThrottlingMaxActiveJobCountExceeded;an import job (${first.jobId}) is running: a hub runs one import or export job at a time; wait for it to end or cancel it`,
    })
    // cancelled part-way: once its first batch is in
    await until(() => getJob(b, first.jobId), (r) => r.body.progress > 0)
    const cancelled = await b.rest('DELETE', `/jobs/${first.jobId}?${V}`)
    expect(cancelled.body).toMatchObject({ jobId: first.jobId, status: 'cancelled', statusMessage: expect.stringMatching(/^imported \d+ of \d+ lines; 0 failed$/) })
    const imported = Number(/^imported (\d+)/.exec(cancelled.body.statusMessage)![1])
    expect(imported).toBeGreaterThan(0)
    expect(imported).toBeLessThan(20_000)
    // what was imported stays: an import cannot be undone
    expect((await b.rest('GET', `/devices/ie-long-0?${V}`)).status).toBe(200)
    const third = await create(b, { type: 'export', outputBlobContainerUri: sas(c), excludeKeysInExport: true })
    expect(third.status).toBe(200)
    expect((await ended(b, third.body.jobId)).status).toBe('completed')
  }, 60_000)
})

describe('a job the hub stopped under', () => {
  it('is failed, saying so, after the hub stops during it or after a crash left it running', async () => {
    const dataDir = tempDir()
    let t = await startTestHub({}, { dataDir })
    const c = await container('ie-stopped')
    await longFile(c, 'ie-stop', 20_000)
    const job = (await create(t, { type: 'import', inputBlobContainerUri: sas(c), outputBlobContainerUri: sas(c) })).body
    await until(() => getJob(t, job.jobId), (r) => r.body.status === 'running')
    await t.stop()
    // as a crash leaves it: a record still running
    const store = openHubStore(dataDir)
    await store.importExportJobs.put('crashed', { ...job, jobId: 'crashed', status: 'running' })
    await store.close()
    t = await startTestHub({}, { dataDir })
    try {
      const reason = 'the hub stopped or restarted while the job ran; import and export jobs are not resumed (their SAS URIs are not stored): create the job again'
      expect((await getJob(t, job.jobId)).body).toMatchObject({ status: 'failed', failureReason: reason })
      expect((await getJob(t, 'crashed')).body).toMatchObject({ status: 'failed', failureReason: reason, endTimeUtc: expect.any(String) })
      // the slot is free again
      expect((await create(t, { type: 'export', outputBlobContainerUri: sas(c), excludeKeysInExport: true })).status).toBe(200)
    } finally {
      await t.stop()
      rmSync(dataDir, { recursive: true, force: true })
    }
  }, 60_000)
})
