// Import and export jobs, the v1 jobs API (identity-registry.md "Import/export jobs";
// azure-iothub's Registry.exportDevicesToBlob, importDevicesFromBlob, getJob, listJobs, cancelJob):
// `POST /jobs/create`, `GET /jobs`, `GET /jobs/{jobId}`, `DELETE /jobs/{jobId}` (cancel). The
// jobs throttle applies; they are Standard-tier features here, as scheduled jobs are.
//
// Rights: an export reads the registry (RegistryRead), an import writes it (RegistryWrite). Both
// are `POST /jobs/create`, told apart by the body, which is read after the route's check: the route
// checks RegistryRead and an import checks RegistryWrite again on top. Bearer roles: creating a job
// is jobs/write plus what the job does to the registry (export devices/read; import devices/write
// and devices/delete, as bulk operations, since an import line may delete); reading jobs is
// jobs/read; cancelling is jobs/delete (the DELETE verb) with RegistryWrite.
import type { Authenticator } from '../auth/authenticator.js'
import { isBearer } from '../auth/authenticator.js'
import type { RoleNeed } from '../auth/roles.js'
import type { ImportExportJobs } from '../jobs/import-export-jobs.js'
import type { RestRequest, Route } from './http-server.js'
import type { RouteLimits } from './route-limits.js'

// registry operations, which Basic tiers have too (quotas-throttling.md: one import/export job on every tier)
const LIMITS: RouteLimits = { throttle: 'jobs' }
// `create` is the create route's; `v2` is scheduled jobs' (job-routes.ts): neither is a job id
const JOB = /^\/jobs\/(?!(?:create|v2)\/?$)([^/]+)\/?$/
const IMPORT_ROLE: RoleNeed = ['jobs/write', 'devices/write', 'devices/delete']

/** The check an import adds to the route's, with the caller's own credential. */
export type ImportAuthorizer = Pick<Authenticator, 'authorizeService' | 'authorizeBearer'>

async function authorizeImport(auth: ImportAuthorizer, req: RestRequest): Promise<void> {
  const header = req.headers.authorization
  if (isBearer(header)) await auth.authorizeBearer(header!, IMPORT_ROLE, `an import job (POST on ${req.path})`)
  else auth.authorizeService(header, 'RegistryWrite')
}

export function importExportRoutes(jobs: ImportExportJobs, auth: ImportAuthorizer): Route[] {
  return [
    {
      method: 'post', pattern: /^\/jobs\/create\/?$/, right: 'RegistryRead', role: ['jobs/write', 'devices/read'], limits: LIMITS,
      async handle(req) {
        const body = req.json<{ type?: unknown }>()
        if (typeof body?.type === 'string' && body.type.toLowerCase() === 'import') await authorizeImport(auth, req)
        return { status: 200, body: await jobs.create(body) }
      },
    },
    {
      method: 'get', pattern: /^\/jobs\/?$/, right: 'RegistryRead', role: 'jobs/read', limits: LIMITS,
      handle: () => ({ status: 200, body: jobs.list() }),
    },
    {
      method: 'get', pattern: JOB, right: 'RegistryRead', role: 'jobs/read', limits: LIMITS,
      handle: (req) => ({ status: 200, body: jobs.get(req.params[0]!) }),
    },
    {
      method: 'delete', pattern: JOB, right: 'RegistryWrite', role: 'jobs/delete', limits: LIMITS,
      async handle(req) {
        return { status: 200, body: await jobs.cancel(req.params[0]!) }
      },
    },
  ]
}
