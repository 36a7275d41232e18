// Azure Storage connection strings: the one the hub prints for its embedded blob store, and the
// ones users give for their own storage accounts (file upload, storage routing endpoints).
// Error messages never echo the input: it holds an account key.

export interface StorageAccount {
  accountName: string
  /** base64, as it appears in connection strings */
  accountKey: string
  /** https://<account>.blob.<suffix> or an explicit BlobEndpoint, without a trailing slash */
  blobEndpoint: string
}

// The storage emulator's published development account (the same in every Azurite and Azure SDK):
// `UseDevelopmentStorage=true` means exactly this, so it is no secret.
const DEV_ACCOUNT = 'devstoreaccount1'
const DEV_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/
// Storage account names: 3-24 lowercase letters and digits (Azurite accepts more, e.g. dashes)
const ACCOUNT_NAME = /^[a-z0-9][a-z0-9-]{1,62}$/

export class StorageConnectionStringError extends Error {
  override name = 'StorageConnectionStringError'
}

/** Parses `Key=Value;...` (keys case-insensitive; values may contain '=', as base64 keys do). */
function fields(s: string): Map<string, string> {
  const out = new Map<string, string>()
  for (const part of s.split(';')) {
    const p = part.trim()
    if (p === '') continue
    const eq = p.indexOf('=')
    if (eq <= 0) throw new StorageConnectionStringError('storage connection string: every part must be Name=Value')
    const name = p.slice(0, eq).trim().toLowerCase()
    if (out.has(name)) throw new StorageConnectionStringError(`storage connection string: ${p.slice(0, eq).trim()} is given twice`)
    out.set(name, p.slice(eq + 1).trim())
  }
  return out
}

function endpointUrl(value: string, what: string): string {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw new StorageConnectionStringError(`storage connection string: ${what} is not a URL`)
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new StorageConnectionStringError(`storage connection string: ${what} must be http(s)`)
  if (url.search || url.hash || url.username || url.password) throw new StorageConnectionStringError(`storage connection string: ${what} must have no query, fragment or credentials`)
  return url.href.replace(/\/+$/, '')
}

export function parseStorageConnectionString(s: string): StorageAccount {
  const f = fields(s)
  if (f.get('usedevelopmentstorage')?.toLowerCase() === 'true') {
    const proxy = f.get('developmentstorageproxyuri')
    const base = proxy ? endpointUrl(proxy, 'DevelopmentStorageProxyUri').replace(/:\d+$/, '') : 'http://127.0.0.1'
    return { accountName: DEV_ACCOUNT, accountKey: DEV_KEY, blobEndpoint: `${base}:10000/${DEV_ACCOUNT}` }
  }
  const accountName = f.get('accountname')
  const accountKey = f.get('accountkey')
  if (!accountName) throw new StorageConnectionStringError('storage connection string: AccountName is missing')
  if (!ACCOUNT_NAME.test(accountName)) throw new StorageConnectionStringError('storage connection string: AccountName must be lowercase letters, digits and dashes')
  if (!accountKey) {
    const hint = f.has('sharedaccesssignature') ? ' (SAS-only connection strings are not supported)' : ''
    throw new StorageConnectionStringError(`storage connection string: AccountKey is missing${hint}`)
  }
  if (!BASE64.test(accountKey) || accountKey.length % 4 !== 0) throw new StorageConnectionStringError('storage connection string: AccountKey is not base64')
  const explicit = f.get('blobendpoint')
  if (explicit) return { accountName, accountKey, blobEndpoint: endpointUrl(explicit, 'BlobEndpoint') }
  const protocol = (f.get('defaultendpointsprotocol') ?? 'https').toLowerCase()
  if (protocol !== 'https' && protocol !== 'http') throw new StorageConnectionStringError('storage connection string: DefaultEndpointsProtocol must be https or http')
  const suffix = f.get('endpointsuffix') ?? 'core.windows.net'
  if (!/^[a-z0-9.-]+$/i.test(suffix)) throw new StorageConnectionStringError('storage connection string: EndpointSuffix is not a host name suffix')
  return { accountName, accountKey, blobEndpoint: `${protocol}://${accountName}.blob.${suffix.toLowerCase()}` }
}

/** The form Azure tools accept for an emulator-style (path-style) endpoint. */
export function formatStorageConnectionString(a: StorageAccount): string {
  const protocol = new URL(a.blobEndpoint).protocol.replace(':', '')
  return `DefaultEndpointsProtocol=${protocol};AccountName=${a.accountName};AccountKey=${a.accountKey};BlobEndpoint=${a.blobEndpoint};`
}
