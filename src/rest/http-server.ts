// A small router over uWebSockets.js for the hub's REST API. Every route names the right its caller
// needs; the Authorization header is checked before the handler runs. Errors leave as IoT Hub error
// bodies.
import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js'
import { DeviceAuthError, isBearer, type Authenticator, type DeviceIdentity } from '../auth/authenticator.js'
import type { Right } from '../auth/policies.js'
import type { RoleNeed } from '../auth/roles.js'
import type { Logger } from '../log.js'
import { errorBody, HubError } from './hub-error.js'
import { jsonDeeperThan, MAX_JSON_DEPTH } from '../json-depth.js'
import type { RouteLimits } from './route-limits.js'
import type { FrontPeer, HttpsFront } from '../tls/https-front.js'

export const MAX_REST_BODY_BYTES = 1024 * 1024

export interface RestRequest {
  method: string
  path: string
  params: string[]
  query: URLSearchParams
  headers: Record<string, string>
  body: Buffer
  json<T = unknown>(): T
  /** routes with right `Device`: the device the caller authenticated as (the path's device) */
  device?: DeviceIdentity
}

export interface RestResponse {
  status: number
  body?: unknown
  headers?: Record<string, string>
}

interface RouteBase {
  method: 'get' | 'put' | 'post' | 'delete' | 'patch'
  pattern: RegExp
  handle(req: RestRequest): Promise<RestResponse> | RestResponse
  /** what the route costs under a tier (rest/route-limits.ts) */
  limits?: RouteLimits
  /** a GET that takes a message from a queue (locks it, counts a delivery): HEAD, answered as GET, would spend one unseen */
  receives?: true
}

/**
 * Who may call a route. A service route names the SAS right and, beside it, what a bearer token's
 * roles must allow (roles.ts). `ControlPlane` routes need the owner policy or a role with control-plane
 * actions; `Anyone`: liveness and readiness probes; `Device`/`Module`: the path's own identity.
 */
export type RouteAccess =
  | { right: Right; role: RoleNeed }
  | { right: 'ControlPlane' | 'Anyone' | 'Device' | 'Module'; role?: undefined }

export type Route = RouteBase & RouteAccess

const STATUS_TEXT: Record<number, string> = {
  200: 'OK', 201: 'Created', 204: 'No Content', 301: 'Moved Permanently', 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden',
  404: 'Not Found', 405: 'Method Not Allowed', 409: 'Conflict', 412: 'Precondition Failed', 413: 'Payload Too Large',
  415: 'Unsupported Media Type', 429: 'Too Many Requests', 500: 'Internal Server Error', 503: 'Service Unavailable', 504: 'Gateway Timeout',
}

/**
 * The path's device (or, given a module id, its module): from the Authorization header's SAS token
 * (its own, or a DeviceConnect policy's), or with no header, from the client certificate (X.509).
 */
function authenticateDevice(auth: Authenticator, header: string | undefined, peer: FrontPeer, deviceId: string, moduleId?: string): DeviceIdentity {
  try {
    const chain = header ? undefined : peer.certificates()
    if (chain) return auth.authenticateX509(chain, deviceId, moduleId)
    return moduleId === undefined ? auth.authenticateDevice(header, deviceId) : auth.authenticateModule(header, deviceId, moduleId)
  } catch (e) {
    if (e instanceof DeviceAuthError) throw new HubError(401003, `Unauthorized: ${e.message}`)
    throw e
  }
}

/**
 * Sends a body no faster than the client reads it, so a response waits here, not in a buffer that
 * end() would grow without bound: a client that pipelines requests and reads nothing made the hub
 * buffer every answer (end() takes each one whole). uWS closes a connection on which a request
 * arrives while an answer is still being written: a pipelining client that does not read its
 * answers as fast as they come is disconnected (the SDKs do not pipeline).
 */
function sendBody(res: HttpResponse, body: Buffer, aborted: () => boolean): void {
  const start = res.getWriteOffset()
  const [ok, done] = res.tryEnd(body, body.length)
  if (ok || done) return
  res.onWritable((offset) => {
    if (aborted()) return true
    const [sent, finished] = res.tryEnd(body.subarray(offset - start), body.length)
    return sent || finished
  })
}

/** A request body as JSON; HubError for an empty, too deep or malformed one. */
function parseJson(body: Buffer): unknown {
  if (body.length === 0) throw new HubError(400005, 'the request body is empty')
  // checked before parsing: a deep document would overflow whatever serialises it next
  if (jsonDeeperThan(body)) throw new HubError(400004, `the request body nests deeper than ${MAX_JSON_DEPTH} levels`)
  let value: unknown
  try { value = JSON.parse(body.toString('utf8')) } catch { throw new HubError(400012, 'the request body is not valid JSON') }
  // JSON.parse keeps "__proto__" as an own key, but msgpackr renames it on its way to a shard, past the
  // twin rules that refuse it (an escaped spelling decodes to the same key: hence "\u" too)
  if ((body.includes('proto') || body.includes('\\u')) && hasProtoKey(value)) throw new HubError(400004, 'the property name __proto__ is not supported')
  return value
}

/** Whether any object in a parsed body has an own key `__proto__` (walked without recursion; the depth is checked before). */
function hasProtoKey(root: unknown): boolean {
  const todo = [root]
  while (todo.length > 0) {
    const v = todo.pop()
    if (typeof v !== 'object' || v === null) continue
    if (!Array.isArray(v) && Object.hasOwn(v, '__proto__')) return true
    for (const child of Object.values(v)) if (typeof child === 'object' && child !== null) todo.push(child)
  }
  return false
}

const API_VERSION = /^\d{4}-\d{2}-\d{2}(-preview)?$/

export function mountRest(app: TemplatedApp, routes: Route[], auth: Authenticator, log: Logger, front: Pick<HttpsFront, 'peerOf'>): void {
  app.any('/*', (res: HttpResponse, req: HttpRequest) => {
    // only the TLS front reaches uWS: a request without its live token came round it
    const peer = front.peerOf(res.getProxiedRemoteAddress())
    if (!peer) return void res.close()
    const method = req.getMethod().toLowerCase()
    // HEAD is answered as GET is (status and headers), without the body (RFC 9110 9.3.2)
    const head = method === 'head'
    const path = req.getUrl()
    const query = new URLSearchParams(req.getQuery() ?? '')
    const headers: Record<string, string> = {}
    req.forEach((k, v) => { headers[k] = v })
    let aborted = false
    res.onAborted(() => { aborted = true })
    const reply = (r: RestResponse) => {
      if (aborted) return
      res.cork(() => {
        res.writeStatus(`${r.status} ${STATUS_TEXT[r.status] ?? ''}`)
        for (const [k, v] of Object.entries(r.headers ?? {})) res.writeHeader(k, v)
        if (r.body === undefined) return void (head ? res.writeHeader('Content-Length', '0').endWithoutBody() : res.end())
        if (!r.headers?.['Content-Type']) res.writeHeader('Content-Type', 'application/json; charset=utf-8')
        const body = Buffer.isBuffer(r.body) ? r.body : Buffer.from(typeof r.body === 'string' ? r.body : JSON.stringify(r.body))
        // the Content-Length a GET would have, and nothing after the headers (this uWS build's
        // endWithoutBody(length) waits for that many bytes: the header is written here instead)
        if (head) return void res.writeHeader('Content-Length', String(body.length)).endWithoutBody()
        sendBody(res, body, () => aborted)
      })
    }
    const fail = (e: unknown) => {
      const err = e instanceof HubError ? e : new HubError(500001, 'internal error')
      if (!(e instanceof HubError)) log.error('request failed', { method, path, error: e as Error })
      reply({ status: err.status, body: errorBody(err), headers: { 'iothub-errorcode': err.codeName } })
    }
    const matches = routes.filter((r) => r.pattern.test(path))
    const route = matches.find((r) => r.method === (head ? 'get' : method) && !(head && r.receives))
    if (!route) return fail(matches.length ? new HubError(405000, `${method.toUpperCase()} is not allowed on ${path}`) : new HubError(404000, `no resource at ${path}`))
    const params = route.pattern.exec(path)!.slice(1).map((p) => {
      try { return decodeURIComponent(p) } catch { return p }
    })
    const apiVersion = query.get('api-version')
    if (apiVersion !== null && !API_VERSION.test(apiVersion)) return fail(new HubError(400001, `api-version ${apiVersion} is not supported`))
    let device: DeviceIdentity | undefined
    // a bearer token's signature is checked asynchronously; the body is read meanwhile
    let bearer: Promise<unknown> | undefined
    try {
      if (route.right === 'Device') device = authenticateDevice(auth, headers.authorization, peer, params[0] ?? '')
      else if (route.right === 'Module') device = authenticateDevice(auth, headers.authorization, peer, params[0] ?? '', params[1] ?? '')
      else if (route.right !== 'Anyone') {
        if (isBearer(headers.authorization)) bearer = auth.authorizeBearer(headers.authorization, route.role ?? 'control-plane', `${method.toUpperCase()} on ${path}`)
        else auth.authorizeService(headers.authorization, route.right, route.role === 'sas-only')
      }
    } catch (e) {
      return fail(e)
    }
    // a refused bearer token is answered once, even if the body is still arriving
    bearer?.catch(() => {})
    const handle = (body: Buffer) => {
      let parsed: { value: unknown } | undefined
      const request: RestRequest = {
        method, path, params, query, headers, body, ...(device ? { device } : {}),
        json<T>() {
          // parsed once: a route's throttle cost may read the body before its handler does
          if (parsed === undefined) parsed = { value: parseJson(body) }
          return parsed.value as T
        },
      }
      Promise.resolve(bearer).then(() => route.handle(request)).then(reply, fail)
    }
    if (!headers['content-length'] && !headers['transfer-encoding']) return handle(Buffer.alloc(0))
    if (Number(headers['content-length']) > MAX_REST_BODY_BYTES) return fail(new HubError(413000, `request body exceeds ${MAX_REST_BODY_BYTES} bytes`))
    const chunks: Buffer[] = []
    let size = 0
    let tooLarge = false
    res.onData((chunk, isLast) => {
      if (aborted || tooLarge) return
      size += chunk.byteLength
      if (size > MAX_REST_BODY_BYTES) {
        // answer once (that answer still goes out in full), then ignore what the client still sends
        tooLarge = true
        fail(new HubError(413000, `request body exceeds ${MAX_REST_BODY_BYTES} bytes`))
        return
      }
      chunks.push(Buffer.from(chunk.slice(0)))
      if (!isLast) return
      handle(Buffer.concat(chunks))
    })
  })
}
