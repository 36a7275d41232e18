// The body of `POST /jobs/create` (identity-registry.md "Import/export jobs"), checked before a job
// exists: its type, the containers' SAS URIs (container-sas.ts), the blob names, and what this hub
// cannot do (storage reached by a managed identity).
import { HubError } from '../rest/hub-error.js'
import { checkContainerSas, type ContainerPolicy, type ContainerSas } from './container-sas.js'
import { CONFIGURATIONS_BLOB } from './configurations-file.js'

export const DEVICES_BLOB = 'devices.txt'
export const IMPORT_ERRORS_BLOB = 'importErrors.log'

export interface ImportExportRequest {
  type: 'export' | 'import'
  /** import: the container devices.txt is read from */
  input?: ContainerSas
  inputBlobName?: string
  /** export: where devices.txt goes; import: where importErrors.log goes */
  output: ContainerSas
  outputBlobName: string
  excludeKeys: boolean
  /** configurations too, in their own blob (export: written to the output container; import: read from the input) */
  configurationsBlobName?: string
}

const argument = (message: string) => new HubError(400004, message)

/** Azure's blob names: 1..1024 characters, not ending in a slash (that would name a folder). */
function blobName(field: string, value: unknown, fallback: string): string {
  if (value === undefined || value === null || value === '') return fallback
  if (typeof value !== 'string' || value.length > 1024 || value.endsWith('/')) throw argument(`${field} must be a blob name of 1-1024 characters`)
  return value
}

/** .NET writes the boolean; other clients may send it as a string. */
function flag(field: string, value: unknown): boolean {
  if (value === undefined || value === null) return false
  if (typeof value === 'boolean') return value
  if (value === 'true' || value === 'false') return value === 'true'
  throw argument(`${field} must be true or false`)
}

export function parseImportExportRequest(body: unknown, policy: ContainerPolicy, nowMs = Date.now()): ImportExportRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw argument('the body must be a job object')
  const b = body as Record<string, unknown>
  const type = typeof b.type === 'string' ? b.type.toLowerCase() : undefined
  if (type !== 'export' && type !== 'import') {
    throw argument(`type must be "export" or "import" (got ${JSON.stringify(b.type)}); scheduled jobs are created with PUT /jobs/v2/{jobId}`)
  }
  const auth = b.storageAuthenticationType
  if (typeof auth === 'string' && auth.toLowerCase() === 'identitybased') {
    throw new HubError(400032, 'storageAuthenticationType identityBased needs a managed identity, and this hub has none: give container URIs with a SAS (keyBased)')
  }
  if (auth !== undefined && auth !== null && !(typeof auth === 'string' && auth.toLowerCase() === 'keybased')) throw argument('storageAuthenticationType must be keyBased or identityBased')
  const configurations = flag('includeConfigurations', b.includeConfigurations)
    ? { configurationsBlobName: blobName('configurationsBlobName', b.configurationsBlobName, CONFIGURATIONS_BLOB) } : {}
  if (type === 'export') {
    const outputBlobName = blobName('outputBlobName', b.outputBlobName, DEVICES_BLOB)
    return {
      type, outputBlobName, excludeKeys: flag('excludeKeysInExport', b.excludeKeysInExport), ...configurations,
      output: checkContainerSas('outputBlobContainerUri', b.outputBlobContainerUri, 'write', `an export writes ${outputBlobName} there`, policy, nowMs),
    }
  }
  const inputBlobName = blobName('inputBlobName', b.inputBlobName, DEVICES_BLOB)
  const outputBlobName = blobName('outputBlobName', b.outputBlobName, IMPORT_ERRORS_BLOB)
  return {
    type, inputBlobName, outputBlobName, excludeKeys: false, ...configurations,
    input: checkContainerSas('inputBlobContainerUri', b.inputBlobContainerUri, 'read', `an import reads ${inputBlobName} from it`, policy, nowMs),
    output: checkContainerSas('outputBlobContainerUri', b.outputBlobContainerUri, 'write', `an import writes ${outputBlobName} there`, policy, nowMs),
  }
}
