// Reads what storage endpoints wrote to a hub's embedded blob store, as a back end would: with
// @azure/storage-blob and the store's account (from the data directory, where the hub keeps it).
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { blobServiceClient, type BlobAccess } from '../../src/storage/blob-client.js'
import { rememberedPort } from '../../src/storage/blob-store-identity.js'
import { BLOB_ACCOUNT_NAME } from '../../src/storage/azurite-process.js'

/** The embedded store's account, once the hub has started it. */
export function embeddedBlobAccess(dataDir: string): BlobAccess | undefined {
  const dir = join(dataDir, 'blobs')
  const port = rememberedPort(dir)
  if (port === undefined || !existsSync(join(dir, 'account-key'))) return undefined
  return {
    account: { accountName: BLOB_ACCOUNT_NAME, accountKey: readFileSync(join(dir, 'account-key'), 'utf8').trim(), blobEndpoint: `https://127.0.0.1:${port}/${BLOB_ACCOUNT_NAME}` },
    caPem: readFileSync(join(dataDir, 'tls', 'ca.pem'), 'utf8'),
  }
}

/** Every blob of `container` in name order with its text; none while the store or container does not exist yet. */
export async function routedBlobs(dataDir: string, container: string): Promise<{ name: string; text: string }[]> {
  const access = embeddedBlobAccess(dataDir)
  if (!access) return []
  const { service, agent } = blobServiceClient(access)
  try {
    const c = service.getContainerClient(container)
    if (!(await c.exists())) return []
    const out: { name: string; text: string }[] = []
    for await (const b of c.listBlobsFlat()) out.push({ name: b.name, text: (await c.getBlockBlobClient(b.name).downloadToBuffer()).toString('utf8') })
    return out.sort((a, b) => (a.name < b.name ? -1 : 1))
  } catch (e) {
    // the store is (re)starting: nothing readable yet
    if ((e as { code?: string }).code === 'ECONNREFUSED') return []
    throw e
  } finally {
    agent.destroy()
  }
}

/** The JSON lines of every routed blob of `container`, in blob name order. */
export async function routedLines(dataDir: string, container: string): Promise<string[]> {
  return (await routedBlobs(dataDir, container)).flatMap((b) => b.text.split('\n').filter(Boolean))
}
