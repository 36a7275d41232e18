// File uploads on their own (LMDB in a temp dir, a blob store that answers from a map): what the
// end-to-end tests cannot wait an hour for. An upload outlives a restart; its SAS lifetime ends it
// (400016, slot freed); a success report queues the notification in the commit that ends the upload.
import { rmSync } from 'node:fs'
import { afterAll, describe, expect, it } from 'vitest'
import { FileUploads, type FileNotification, type UploadTarget } from '../src/files/file-uploads.js'
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
const open = () => {
  const queue = new ServiceBoundQueue<FileNotification>(store.root, store.fileNotifications, undefined, { batch: 1, lockMs: 60_000, ttlMs: HOUR, maxDeliveries: 10 })
  return { queue, uploads: new FileUploads(store.root, store.fileUploads, queue, async () => target, { container: 'up', sasTtlMs: HOUR, notifications: true }) }
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
})
