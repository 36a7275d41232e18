// A BlobServiceClient for a storage account, with the hub's CA trusted when the account is the
// embedded store (its certificate comes from that CA). Used by the main thread (file upload) and by
// the shards (storage routing endpoints), which get the account over the thread boundary.
import { Agent } from 'node:https'
import { BlobServiceClient, newPipeline, StorageSharedKeyCredential, type Pipeline } from '@azure/storage-blob'
import type { StorageAccount } from './storage-connection-string.js'

/** What a thread needs to reach the blob store (crosses to the shards as a 'blob.endpoint' request). */
export interface BlobAccess { account: StorageAccount; caPem: string | null }

/** `tryTimeoutMs`: how long one try may take (the main thread's small calls: short; routed batches of up to 500 MB: long) */
export function blobServiceClient(access: BlobAccess, tryTimeoutMs = 10_000): { service: BlobServiceClient; credential: StorageSharedKeyCredential; agent: Agent } {
  const { account, caPem } = access
  const credential = new StorageSharedKeyCredential(account.accountName, account.accountKey)
  // public CAs for a real account; the hub's for the embedded one
  const agent = new Agent({ keepAlive: true, maxSockets: 16, ...(caPem ? { ca: caPem } : {}) })
  // a store that stops answering fails a call after two tries, never holds it forever
  const pipeline = newPipeline(credential, { keepAliveOptions: { enable: true }, retryOptions: { maxTries: 2, tryTimeoutInMs: tryTimeoutMs, retryDelayInMs: 500 } })
  withAgent(pipeline, agent)
  return { service: new BlobServiceClient(account.blobEndpoint, pipeline), credential, agent }
}

/** Sends every request of the pipeline through `agent` (its CAs, its socket bound, its lookup). */
export function withAgent(pipeline: Pipeline, agent: Agent): Pipeline {
  pipeline.factories.unshift({ create: (next) => ({ sendRequest: (req) => { req.agent = agent; return next.sendRequest(req) } }) })
  return pipeline
}
