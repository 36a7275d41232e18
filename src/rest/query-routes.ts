// `POST /devices/query` (query-language.md, sdk-compat.md §4): body `{"query": "..."}`, page size in
// `x-ms-max-item-count` (default 100; at most 1000, larger values are clamped — the spec is unsure
// whether Azure clamps or refuses), `x-ms-continuation` in and out (left out on the last page, or
// the SDK loops), `x-ms-item-type`. Needs ServiceConnect (auth.md: queries are a service operation).
// The scan runs in the query worker (query-pool.ts), not on the edge's event loop.
import type { QueryPool } from '../query/query-pool.js'
import { HubError } from './hub-error.js'
import type { RestRequest, Route } from './http-server.js'

const MAX_PAGE = 1000

/** The page size a query asks for in `x-ms-max-item-count` (default 100, clamped to 1000). */
export function requestedPageSize(req: RestRequest): number {
  const raw = req.headers['x-ms-max-item-count']
  if (raw === undefined || raw === '') return 100
  const size = Number(raw)
  if (!Number.isInteger(size) || size < 1) throw new HubError(400004, 'x-ms-max-item-count must be a positive integer')
  return Math.min(size, MAX_PAGE)
}

export function queryRoutes(pool: QueryPool): Route[] {
  return [{
    method: 'post', pattern: /^\/devices\/query\/?$/, right: 'ServiceConnect', role: 'twins/read', limits: { throttle: 'queries', meter: { op: 'queries', bytes: 'response' } },
    async handle(req) {
      const body = req.json<{ query?: unknown }>()
      if (typeof body !== 'object' || body === null || typeof body.query !== 'string') throw new HubError(400004, 'the body must be {"query": "<query text>"}')
      const outcome = await pool.run(body.query, requestedPageSize(req), req.headers['x-ms-continuation'] || undefined)
      if (!outcome.ok) {
        throw new HubError(400004, outcome.kind === 'syntax'
          ? `The query is invalid. Please check the format of the query and try again. ${outcome.message}`
          : outcome.message)
      }
      const page = outcome.page
      const headers: Record<string, string> = { 'x-ms-item-type': page.itemType }
      if (page.continuation !== undefined) headers['x-ms-continuation'] = page.continuation
      return { status: 200, body: page.items, headers }
    },
  }]
}
