// File uploads on their own (LMDB in a temp dir, a blob store that answers from a map): what the
// end-to-end tests cannot wait an hour for. An upload outlives a restart; its SAS lifetime ends it
// (400016, slot freed); a success report queues the notification in the commit that ends the upload.
import { rmSync } from 'node:fs'
import { afterAll, describe, expect, it } from 'vitest'
import { FileUploads, MAX_STORE_CALLS, type FileNotification, type UploadTarget } from '../src/files/file-uploads.js'
import { ServiceBoundQueue } from '../src/c2d/service-bound-queue.js'
import { HubError } from '../src/rest/hub-error.js'
import { openHubStore } from '../src/store/hub-store.js'
import { tempDir } from './helpers/test-hub.js'

const dir = tempDir()
const store = openHubStore(dir)
afterAll(async () => { await store.close(); rmSync(dir, { recursive: true, force: true }) })

const blobs = new Map<string, number>()
const target: UploadTarget = {
  hostName: 'store.example:10000/acct',
  blobUri: (c, b) => `https://store.example:10000/acct/${c}/${b}`,
  blobSas: (c, b, expiresOn) => `?sr=b&blob=${encodeURIComponent(`${c}/${b}`)}&se=${expiresOn.toISOString()}`,
  ensureContainer: async () => {},
  blobProperties: async (c, b) => (blobs.has(`${c}/${b}`) ? { size: blobs.get(`${c}/${b}`)!, lastModified: new Date(1_700_000_000_000) } : undefined),
}
const HOUR = 3600_000
const open = (o: { target?: () => Promise<UploadTarget>; maxPendingNotifications?: number; ttlMs?: number } = {}) => {
  const queue = new ServiceBoundQueue<FileNotification>(store.root, store.fileNotifications, undefined, { batch: 1, lockMs: 60_000, ttlMs: o.ttlMs ?? HOUR, maxDeliveries: 10 })
  return { queue, uploads: new FileUploads(store.root, store.fileUploads, queue, o.target ?? (async () => target), { container: 'up', sasTtlMs: HOUR, notifications: true, maxPendingNotifications: o.maxPendingNotifications }) }
}

/** Settles every outcome: [fulfilled count, rejection codes sorted]. */
async function outcomes(ps: Promise<unknown>[]): Promise<[number, number[]]> {
  const r = await Promise.allSettled(ps)
  return [r.filter((x) => x.status === 'fulfilled').length, r.flatMap((x) => (x.status === 'rejected' ? [(x.reason as HubError).code] : [])).sort()]
}

describe('FileUploads', () => {
  it('an upload started before a restart completes after it, and its notification is queued with the end of the upload', async () => {
    const before = open()
    const now = Date.now()
    const s = await before.uploads.start('dev-r', 'data/log.txt', now)
    expect(s).toEqual({
      correlationId: expect.stringMatching(/^[A-Za-z0-9_-]{32}$/), hostName: 'store.example:10000/acct', containerName: 'up', blobName: 'dev-r/data/log.txt',
      sasToken: `?sr=b&blob=${encodeURIComponent('up/dev-r/data/log.txt')}&se=${new Date(now + HOUR).toISOString()}`,
    })
    before.uploads.close()
    const after = open()
    expect(after.uploads.activeCount('dev-r', now)).toBe(1)
    blobs.set('up/dev-r/data/log.txt', 42)
    await after.uploads.complete('dev-r', s.correlationId, { isSuccess: true, statusCode: 201 }, now + 1000)
    expect(after.uploads.activeCount('dev-r', now)).toBe(0)
    // both facts are in the store: a third start sees neither the upload nor a missing notification
    const third = open()
    expect(third.uploads.activeCount('dev-r', now)).toBe(0)
    const m = await third.queue.receive(now + 2000)
    expect(m?.records).toEqual([{ deviceId: 'dev-r', blobUri: 'https://store.example:10000/acct/up/dev-r/data/log.txt', blobName: 'dev-r/data/log.txt', lastUpdatedTime: '2023-11-14T22:13:20.000Z', blobSizeInBytes: 42, enqueuedTimeUtc: new Date(now + 1000).toISOString() }])
    await third.queue.complete(m!.lockToken)
    after.uploads.close()
    third.uploads.close()
  })

  it('a report after the SAS expired is 400016; expired uploads free their slots', async () => {
    const { uploads, queue } = open()
    const now = Date.now()
    const ids = []
    for (let i = 0; i < 10; i++) ids.push((await uploads.start('dev-x', `f${i}`, now)).correlationId)
    await expect(uploads.start('dev-x', 'f10', now)).rejects.toEqual(new HubError(403006, 'Number of active file upload requests cannot exceed 10'))
    const late = now + HOUR + 1
    await expect(uploads.complete('dev-x', ids[0], { isSuccess: true }, late)).rejects.toMatchObject({ code: 400016 })
    // ended: the id is unknown now, and the slots of the expired ones are free
    await expect(uploads.complete('dev-x', ids[0], { isSuccess: true }, late)).rejects.toMatchObject({ code: 400015 })
    expect(uploads.activeCount('dev-x', late)).toBe(0)
    expect((await uploads.start('dev-x', 'f11', late)).blobName).toBe('dev-x/f11')
    expect(await queue.receive(late)).toBeUndefined()
    uploads.close()
  })

  it('counts an upload before waiting for the store: 25 starts while it starts give 10 uploads and 15 refusals', async () => {
    let release!: () => void
    const starting = new Promise<void>((resolve) => { release = resolve })
    const { uploads, queue } = open({ target: async () => { await starting; return target } })
    const all = Array.from({ length: 25 }, (_, i) => uploads.start('dev-rush', `f${i}`))
    release()
    expect(await outcomes(all)).toEqual([10, Array(15).fill(403006)])
    uploads.close()
    queue.close()
  })

  it('one report of an upload at a time: 8 at once queue one notification', async () => {
    const { uploads, queue } = open()
    const s = await uploads.start('dev-twice', 'once.bin')
    blobs.set('up/dev-twice/once.bin', 3)
    expect(await outcomes(Array.from({ length: 8 }, () => uploads.complete('dev-twice', s.correlationId, { isSuccess: true })))).toEqual([1, Array(7).fill(400015)])
    const first = await queue.receive()
    expect(first?.records.map((r) => r.blobName)).toEqual(['dev-twice/once.bin'])
    expect(await queue.receive()).toBeUndefined()
    await queue.complete(first!.lockToken)
    uploads.close()
    queue.close()
  })

  it('two receives at once never hand out one record twice', async () => {
    const { uploads, queue } = open()
    for (let i = 0; i < 2; i++) {
      const s = await uploads.start('dev-two', `r${i}`)
      blobs.set(`up/dev-two/r${i}`, 1)
      await uploads.complete('dev-two', s.correlationId, { isSuccess: true })
    }
    const [a, b, c] = await Promise.all([queue.receive(), queue.receive(), queue.receive()])
    expect([a?.records[0]?.blobName, b?.records[0]?.blobName, c]).toEqual(['dev-two/r0', 'dev-two/r1', undefined])
    await queue.complete(a!.lockToken)
    await queue.complete(b!.lockToken)
    uploads.close()
    queue.close()
  })

  it('bounds the notifications waiting for the service (503, the upload stays open), and expired ones leave without a reader', async () => {
    const { uploads, queue } = open({ maxPendingNotifications: 2, ttlMs: 1000 })
    const now = Date.now()
    const ids = []
    for (let i = 0; i < 3; i++) {
      ids.push((await uploads.start('dev-full', `n${i}`, now)).correlationId)
      blobs.set(`up/dev-full/n${i}`, 1)
    }
    await uploads.complete('dev-full', ids[0], { isSuccess: true }, now)
    await uploads.complete('dev-full', ids[1], { isSuccess: true }, now)
    await expect(uploads.complete('dev-full', ids[2], { isSuccess: true }, now)).rejects.toEqual(new HubError(503001, '2 file notifications are waiting for the service; report again later'))
    expect(uploads.activeCount('dev-full', now)).toBe(1)
    // nobody reads: past their TTL the sweep removes them, and the report goes through
    await queue.sweep(now + 2000)
    expect(queue.size).toBe(0)
    await uploads.complete('dev-full', ids[2], { isSuccess: true }, now)
    expect(queue.size).toBe(1)
    await queue.sweep(now + 2000)
    uploads.close()
    queue.close()
  })

  it('a blob store that fails or hangs answers 503, and at most MAX_STORE_CALLS wait for it', async () => {
    const hang = new Promise<never>(() => {})
    const failing = open({ target: async () => ({ ...target, ensureContainer: async () => { throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) } }) })
    await expect(failing.uploads.start('dev-store', 'a')).rejects.toEqual(new HubError(503001, 'the blob store did not answer; retry later'))
    expect(failing.uploads.activeCount('dev-store')).toBe(0)
    failing.uploads.close()
    const hung = open({ target: () => hang })
    const waiting = Array.from({ length: MAX_STORE_CALLS }, (_, i) => hung.uploads.start(`dev-hang-${i}`, 'a'))
    await expect(hung.uploads.start('dev-hang-x', 'a')).rejects.toEqual(new HubError(503001, `more than ${MAX_STORE_CALLS} requests are waiting for the blob store; retry later`))
    void waiting
    hung.uploads.close()
  })

  it('refuses a blob name that is not well-formed UTF-16 (a lone surrogate)', async () => {
    const { uploads } = open()
    await expect(uploads.start('dev-u', 'bad\ud800name')).rejects.toMatchObject({ code: 400004 })
    expect((await uploads.start('dev-u', 'good-\ud83d\ude00')).blobName).toBe('dev-u/good-\ud83d\ude00')
    uploads.close()
  })
})
