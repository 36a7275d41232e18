// File upload over the device HTTPS API (file-upload.md): `POST /devices/{id}/files` answers the
// blob SAS, and the completion report comes to `POST /devices/{id}/files/notifications` (the
// correlation id in the body) or `…/notifications/{correlationId}` (the form the Node SDK uses).
// A device reaches only its own paths. The service reads the notifications over AMQP
// (`/messages/serviceBound/filenotifications`) or here, over REST.
import type { ServiceBoundQueue } from '../c2d/service-bound-queue.js'
import type { FileNotification, FileUploads } from '../files/file-uploads.js'
import type { RestRequest, Route } from './http-server.js'
import { HubError } from './hub-error.js'
import { serviceBoundRoutes } from './service-bound-routes.js'
import type { RouteLimits } from './route-limits.js'

/** Each call is billed as one message (quotas-throttling.md); starts are throttled. */
const BILLED: RouteLimits = { meter: { op: 'fileUploads', bytes: 'request' } }

function body(req: RestRequest): Record<string, unknown> {
  const b = req.json<unknown>()
  if (typeof b !== 'object' || b === null || Array.isArray(b)) throw new HubError(400004, 'the body must be a JSON object')
  return b as Record<string, unknown>
}

export function fileUploadRoutes(uploads: FileUploads, notifications: ServiceBoundQueue<FileNotification>, hubName: string): Route[] {
  const complete = async (req: RestRequest, correlationId: unknown) => {
    const b = body(req)
    await uploads.complete(req.device!.device.deviceId, correlationId, { isSuccess: b.isSuccess, statusCode: b.statusCode, statusDescription: b.statusDescription })
    return { status: 204 }
  }
  return [
    {
      method: 'post', pattern: /^\/devices\/([^/]+)\/files\/?$/i, right: 'Device', limits: { ...BILLED, throttle: 'fileUploads' },
      async handle(req) {
        return { status: 200, body: await uploads.start(req.device!.device.deviceId, body(req).blobName) }
      },
    },
    {
      method: 'post', pattern: /^\/devices\/([^/]+)\/files\/notifications\/?$/i, right: 'Device', limits: BILLED,
      handle: (req) => complete(req, body(req).correlationId),
    },
    {
      method: 'post', pattern: /^\/devices\/([^/]+)\/files\/notifications\/([^/]+)\/?$/i, right: 'Device', limits: BILLED,
      handle: (req) => complete(req, req.params[1]),
    },
    ...serviceBoundRoutes({ name: 'filenotifications', queue: notifications, contentType: 'application/vnd.microsoft.iothub.filenotification.json', single: true, hubName, role: 'fileUpload/notifications/action' }),
  ]
}
