// The blob containers an import or export job reads and writes, named by a container URL with a
// SAS query (`?sv=…&sp=…&se=…&sig=…`). What can be told from the URL alone is checked when the job is
// created (400008 BlobContainerValidationError): https, a SAS with a signature, not expired, the
// permission the job needs. What only the store can tell (a wrong signature, a missing container)
// fails the job with the store's answer as its failureReason. The SAS is a secret: it stays in
// memory for the job's run and is never stored, logged or answered (`redacted`).
import { Agent } from 'node:https'
import { AnonymousCredential, ContainerClient, newPipeline } from '@azure/storage-blob'
import { HubError } from '../rest/hub-error.js'
import { withAgent } from '../storage/blob-client.js'
import { configuredRefusal, guardedLookup, type DestinationPolicy } from '../routing/webhook-destination.js'

export interface ContainerSas {
  url: URL
  /** the URL without its query: what the job record keeps and answers */
  redacted: string
}

/** What a job does with a container: `read` (an import's input) or `write` (an export's output, an import's error log). */
export type ContainerUse = 'read' | 'write'

/** Where the hub may send a job's blob requests (the webhook rules), and its own embedded store, which it trusts anyway. */
export interface ContainerPolicy {
  destination: () => DestinationPolicy
  /** the embedded store while it runs: `host:port` (on loopback, always allowed) and the CA its certificate comes from (the hub's) */
  embeddedStore: () => { host: string; caPem: string } | undefined
}

const invalid = (message: string) => new HubError(400008, message)

/** The SAS permission letter a use needs (container and account SAS both spell them so). */
const LETTER: Record<ContainerUse, string> = { read: 'r', write: 'w' }

/**
 * Checks a container URI a job was given. A SAS that names a stored access policy (`si`) may leave
 * its expiry and permissions to the policy: then only the store can check them.
 */
export function checkContainerSas(field: string, value: unknown, use: ContainerUse, why: string, policy: ContainerPolicy, nowMs = Date.now()): ContainerSas {
  if (value === undefined || value === null || value === '') throw new HubError(400005, `${field} is required`)
  if (typeof value !== 'string') throw invalid(`${field} must be a blob container URL with a SAS`)
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw invalid(`${field} is not a URL`)
  }
  // the SAS would cross the network in clear
  if (url.protocol !== 'https:') throw invalid(`${field} must be an https URL (its SAS is a secret)`)
  if (url.pathname.replace(/\/+$/, '') === '') throw invalid(`${field} names no container`)
  const q = url.searchParams
  if (!q.get('sig')) throw invalid(`${field} has no SAS: give the container URL with a shared access signature (…?sv=…&sp=…&se=…&sig=…)`)
  const storedPolicy = q.get('si') !== null
  const se = q.get('se')
  if (se === null) {
    if (!storedPolicy) throw invalid(`${field}: its SAS has no expiry (se)`)
  } else {
    const expires = Date.parse(se)
    if (Number.isNaN(expires)) throw invalid(`${field}: its SAS expiry (se) ${JSON.stringify(se)} is not a date`)
    if (expires <= nowMs) throw invalid(`${field}: its SAS expired at ${new Date(expires).toISOString()}; give one that is still valid`)
  }
  const sp = q.get('sp')
  if (sp === null) {
    if (!storedPolicy) throw invalid(`${field}: its SAS names no permissions (sp)`)
  } else if (!sp.includes(LETTER[use])) {
    throw invalid(`${field}: its SAS grants sp=${sp}, but ${why}: it needs ${use} (${LETTER[use]})`)
  }
  const refused = embeddedCa(url, policy) !== undefined ? undefined : configuredRefusal(url.href, policy.destination())
  if (refused) throw invalid(`${field}: ${refused}`)
  return { url, redacted: `${url.origin}${url.pathname}` }
}

/** The hub's CA when the URL names the embedded store. */
function embeddedCa(url: URL, policy: ContainerPolicy): string | undefined {
  const store = policy.embeddedStore()
  return store && store.host === url.host ? store.caPem : undefined
}

/** A job's client for one container, and what to release when the job ends. */
export interface JobContainer { client: ContainerClient; close(): void }

/**
 * A ContainerClient for the SAS URL. The embedded store's certificate comes from the hub's CA, which
 * its agent trusts; any other store is checked against Node's CAs (the public ones, plus
 * NODE_EXTRA_CA_CERTS: another hub's embedded store), with the addresses the webhook rules refuse
 * refused at connect. Not both in one agent: a `ca` list of the public roots and the hub's CA costs
 * ~40 ms of event loop per TLS connection to parse.
 */
/** How long one request to a job's blob store may wait for its answer. */
export const STORE_TRY_MS = 60_000

export function openContainer(sas: ContainerSas, policy: ContainerPolicy): JobContainer {
  const hubCa = embeddedCa(sas.url, policy)
  const agent = new Agent({ keepAlive: true, maxSockets: 4, ...(hubCa !== undefined ? { ca: hubCa } : { lookup: guardedLookup(sas.url, policy.destination) }) })
  // a store that stops answering fails the job after three tries of a minute each, never holds it
  // forever: the retry policy's try timeout only asks the server (?timeout=); the request's own
  // timeout ends a try that gets no answer (a body that stalls once it flows: the job's idle watchdog)
  const pipeline = withAgent(newPipeline(new AnonymousCredential(), {
    keepAliveOptions: { enable: true }, retryOptions: { maxTries: 3, tryTimeoutInMs: STORE_TRY_MS, retryDelayInMs: 500 },
  }), agent)
  pipeline.factories.unshift({ create: (next) => ({ sendRequest: (req) => { req.timeout = STORE_TRY_MS; return next.sendRequest(req) } }) })
  return { client: new ContainerClient(sas.url.href, pipeline), close: () => agent.destroy() }
}

/** Why the store refused a job's request, for its failureReason (never the URL: it holds the SAS). */
export function storeRefusal(e: unknown, what: string): string {
  const r = e as { statusCode?: number; code?: string; name?: string; message?: string }
  if (r.name === 'AbortError') return `${what}: cancelled`
  if (typeof r.statusCode === 'number' && r.statusCode > 0) return `${what}: the blob store answered ${r.statusCode}${r.code ? ` ${r.code}` : ''}`
  if (r.code === 'DESTINATION_REFUSED') return `${what}: ${r.message}`
  return `${what}: the blob store could not be reached (${r.code ?? r.message ?? 'unknown error'})`
}
