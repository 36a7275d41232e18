// The hub's service REST API as the command line calls it: one TLS agent that trusts the hub's CA,
// a fresh service token per request, and every failure turned into one line a person can act on.
import { Agent, request } from 'undici'
import type { HubTarget } from './hub-target.js'
import { CliError } from './output.js'

export const API_VERSION = '2021-04-12'
/** The largest answer read (the hub's own pages stay far below it); past it the command fails rather than grow. */
export const MAX_ANSWER_BYTES = 16 * 1024 * 1024

export interface ServiceCall {
  body?: unknown
  /** a body sent as it is (with its own content-type header) instead of JSON */
  raw?: Buffer
  headers?: Record<string, string>
  /** how long to wait for the answer's headers (a method call waits for its device) */
  timeoutMs?: number
}

export interface ServiceClient {
  readonly target: HubTarget
  /** the parsed JSON answer (undefined for an empty one); CliError for anything but 2xx */
  call<T = unknown>(method: string, path: string, o?: ServiceCall): Promise<{ status: number; body: T; headers: Record<string, string | string[] | undefined> }>
  close(): Promise<void>
}

/** `ErrorCode:DeviceNotFound;the text` → `DeviceNotFound: the text` (Azure's error bodies). */
export function describeHubError(status: number, text: string): string {
  let message = text
  try {
    const body = JSON.parse(text) as { Message?: string; message?: string }
    message = body.Message ?? body.message ?? text
  } catch { /* not JSON: the text as it came */ }
  const m = /^ErrorCode:([^;]+);(.*)$/s.exec(message)
  const line = m ? `${m[1]}: ${m[2]}` : message || 'no body'
  return `the hub answered ${status}, ${line.replace(/\s+/g, ' ').trim().slice(0, 2000)}`
}

/** Connection failures, in words: the hub down, a wrong port, a CA not trusted. */
export function describeConnectError(e: unknown, where: string): CliError {
  const err = e as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException }
  const code = err.cause?.code ?? err.code ?? ''
  if (code === 'ECONNREFUSED') return new CliError(`the hub is not running: connection refused at ${where}; start it with "npx hyperhub start"`, 1)
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return new CliError(`cannot find the hub's host (${code}) for ${where}`, 1)
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(code)) return new CliError(`the hub's certificate is not trusted (${code}) at ${where}: pass --ca <the hub's ca.pem> or set NODE_EXTRA_CA_CERTS`, 1)
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || err.name === 'TimeoutError') return new CliError(`the hub did not answer in time at ${where}`, 1)
  if (code === 'UND_ERR_SOCKET') return new CliError(`the hub closed the connection at ${where}`, 1)
  return new CliError(`cannot reach the hub at ${where} (${code || (err.message ?? String(e))})`, 1)
}

export function serviceClient(target: HubTarget): ServiceClient {
  const agent = new Agent({ connect: { ...(target.ca ? { ca: target.ca } : {}), ...(target.servername ? { servername: target.servername } : {}) }, connections: 16 })
  const origin = `https://${target.address.includes(':') ? `[${target.address}]` : target.address}:${target.httpsPort}`
  return {
    target,
    async call(method, path, o = {}) {
      const sep = path.includes('?') ? '&' : '?'
      const payload = o.raw ?? (o.body === undefined ? undefined : JSON.stringify(o.body))
      const headersTimeout = o.timeoutMs ?? 30_000
      let res
      let text: string
      try {
        res = await request(`${origin}${path}${sep}api-version=${API_VERSION}`, {
          method: method as 'GET', dispatcher: agent, body: payload,
          headers: { authorization: target.serviceToken(), ...(o.body !== undefined ? { 'content-type': 'application/json' } : {}), ...o.headers },
          // and the whole answer within a minute more: a body that trickles must not hold the command for ever
          headersTimeout, bodyTimeout: 60_000, signal: AbortSignal.timeout(headersTimeout + 60_000),
        })
        const chunks: Buffer[] = []
        let bytes = 0
        for await (const chunk of res.body as AsyncIterable<Buffer>) {
          bytes += chunk.length
          if (bytes > MAX_ANSWER_BYTES) {
            res.body.destroy()
            throw new CliError(`the answer from ${target.describe} is larger than ${MAX_ANSWER_BYTES / 1048576} MB; is that a hub?`, 1)
          }
          chunks.push(chunk)
        }
        text = Buffer.concat(chunks).toString('utf8')
      } catch (e) {
        if (e instanceof CliError) throw e
        // undici refuses a header value it cannot send (the options are checked first; this is the backstop)
        if ((e as NodeJS.ErrnoException).code === 'UND_ERR_INVALID_ARG') throw new CliError(`a request header is not allowed: ${(e as Error).message}`)
        throw describeConnectError(e, target.describe)
      }
      if (res.statusCode >= 300) throw new CliError(describeHubError(res.statusCode, text), 1)
      let body: unknown
      try { body = text ? JSON.parse(text) : undefined } catch { body = text }
      return { status: res.statusCode, body: body as never, headers: res.headers }
    },
    close: () => agent.close(),
  }
}
