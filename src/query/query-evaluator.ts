// Runs a twin query (query-parser.ts) over documents (twin JSON objects), one page at a time.
// Semantics:
// - WHERE holds only when the condition is exactly `true` (operators and functions:
//   src/query-common/values.ts, functions.ts — the same semantics as route conditions).
// - Paths: the first name matches a top-level field exactly, else case-insensitively (Azure resolves
//   `DeviceId` to `deviceId`); deeper names match exactly.
// - SELECT *: the documents themselves (item type `twin`, `deviceJob` for devices.jobs).
// - Projections (item type `raw`): an object per document keyed by the alias, else the last name
//   of the path (the document's spelling for a top-level field); missing values are left out.
//   Choice (spec uncertain): flat keys, as DocumentDB SQL does (`properties.reported.x` → `x`).
// - Aggregates: COUNT() counts documents; SUM/AVG/MIN/MAX use number values only (others ignored);
//   SUM of none is 0, AVG/MIN/MAX of none are left out. An aggregate without alias is keyed `$1`,
//   `$2`, … in order. Without GROUP BY an aggregate query yields exactly one item.
// - GROUP BY: one item per distinct key (first-seen order), documents lacking a grouped value form
//   their own group with that field left out.
// - Paging: pageSize items per page (default 100; the REST layer clamps to Azure's limit). The
//   continuation is an opaque token (offset + a hash of the query text), undefined on the last page;
//   a token from another query is rejected with InvalidContinuationError. TOP caps the whole result.
import type { Expr, Segment } from '../query-common/ast.js'
import { lookupFunction, resetStringBudget } from '../query-common/functions.js'
import { and, arithmetic, comparison, element, inList, member, negate, not, or, type JsonValue, type Value } from '../query-common/values.js'
import { parseQuery, type Projection, type Query } from './query-parser.js'

export type ItemType = 'twin' | 'deviceJob' | 'raw'

export interface QueryPage {
  items: object[]
  /** Pass back to get the next page; undefined on the last page. */
  continuation: string | undefined
  itemType: ItemType
}

export interface QueryOptions {
  pageSize?: number
  /** a page stops once its items weigh this much as JSON (at least one item): the edge serialises it */
  maxPageBytes?: number
  continuation?: string
}

export class InvalidContinuationError extends Error {
  constructor() {
    super('the continuation token does not belong to this query')
    this.name = 'InvalidContinuationError'
  }
}

function resolveFirst(doc: Value, name: string): { key: string; value: Value } {
  const exact = member(doc, name)
  if (exact !== undefined || doc === null || typeof doc !== 'object' || Array.isArray(doc)) return { key: name, value: exact }
  const lower = name.toLowerCase()
  for (const key of Object.keys(doc)) if (key.toLowerCase() === lower) return { key, value: (doc as Record<string, JsonValue>)[key] }
  return { key: name, value: undefined }
}

/** The value at `path` in `doc`, and the key to report it under. */
export function resolvePath(doc: Value, path: readonly Segment[]): { key: string; value: Value } {
  const first = path[0]!
  let r = typeof first === 'number' ? { key: String(first), value: element(doc, first) } : resolveFirst(doc, first)
  for (let k = 1; k < path.length; k++) {
    const seg = path[k]!
    r = typeof seg === 'number' ? { key: r.key, value: element(r.value, seg) } : { key: seg, value: member(r.value, seg) }
  }
  return r
}

/** Evaluates an expression tree against a document. */
export function evaluateExpression(e: Expr, doc: Value): Value {
  switch (e.kind) {
    case 'literal': return e.value
    case 'path': return resolvePath(doc, e.segments).value
    case 'unary': return e.op === 'NOT' ? not(evaluateExpression(e.operand, doc)) : negate(evaluateExpression(e.operand, doc))
    case 'binary': {
      if (e.op === 'AND') {
        const l = evaluateExpression(e.left, doc)
        return l === false ? false : and(l, evaluateExpression(e.right, doc))
      }
      if (e.op === 'OR') {
        const l = evaluateExpression(e.left, doc)
        return l === true ? true : or(l, evaluateExpression(e.right, doc))
      }
      const l = evaluateExpression(e.left, doc), r = evaluateExpression(e.right, doc)
      return '+-*/%'.includes(e.op) ? arithmetic(e.op, l, r) : comparison(e.op, l, r)
    }
    case 'in': {
      const r = inList(evaluateExpression(e.operand, doc), e.list)
      return e.negated ? not(r) : r
    }
    case 'call': return lookupFunction(e.fn)!.impl(e.args.map((a) => evaluateExpression(a, doc)))
    case 'array': return e.items.map((v) => v === undefined ? null : v)
  }
}

function projectionKey(p: Projection, doc: Value, unnamed: { n: number }): string {
  if (p.alias !== undefined) return p.alias
  if (p.kind === 'aggregate') return `$${++unnamed.n}`
  return resolvePath(doc, p.path).key
}

function project(select: Projection[], doc: Value): object {
  const item: Record<string, JsonValue> = {}
  for (const p of select) {
    const { key, value } = resolvePath(doc, (p as Extract<Projection, { kind: 'path' }>).path)
    if (value !== undefined) item[p.alias ?? key] = value
  }
  return item
}

function aggregate(query: Query, docs: Value[]): object {
  const item: Record<string, JsonValue> = {}
  const unnamed = { n: 0 }
  for (const p of query.select as Projection[]) {
    const key = projectionKey(p, docs[0], unnamed)
    if (p.kind === 'path') {
      const v = resolvePath(docs[0], p.path).value
      if (v !== undefined) item[key] = v
      continue
    }
    if (p.fn === 'COUNT') { item[key] = docs.length; continue }
    const nums: number[] = []
    for (const d of docs) { const v = resolvePath(d, p.path!).value; if (typeof v === 'number') nums.push(v) }
    if (p.fn === 'SUM') item[key] = nums.reduce((a, b) => a + b, 0)
    else if (nums.length === 0) continue
    else if (p.fn === 'AVG') item[key] = nums.reduce((a, b) => a + b, 0) / nums.length
    else item[key] = p.fn === 'MIN' ? Math.min(...nums) : Math.max(...nums)
  }
  return item
}

/** Whether a WHERE clause holds for one document (each document gets the string functions' whole budget). */
export function whereHolds(where: Expr | undefined, doc: Value): boolean {
  if (where === undefined) return true
  resetStringBudget()
  return evaluateExpression(where, doc) === true
}

function matches(query: Query, doc: Value): boolean {
  return whereHolds(query.where, doc)
}

function hashQuery(source: string): string {
  let h = 0x811c9dc5
  for (let i = 0; i < source.length; i++) h = Math.imul(h ^ source.charCodeAt(i), 0x01000193)
  return (h >>> 0).toString(36)
}

function encodeContinuation(query: Query, offset: number): string {
  return Buffer.from(JSON.stringify({ v: 1, h: hashQuery(query.source), o: offset })).toString('base64url')
}

function decodeContinuation(query: Query, token: string): number {
  try {
    const t = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as { v?: unknown; h?: unknown; o?: unknown }
    if (t.v === 1 && t.h === hashQuery(query.source) && Number.isInteger(t.o) && (t.o as number) >= 0) return t.o as number
  } catch { /* fall through */ }
  throw new InvalidContinuationError()
}

function isAggregateQuery(q: Query): boolean {
  return q.groupBy !== undefined || (q.select !== '*' && q.select.some((p) => p.kind === 'aggregate'))
}

/** Runs `query` (text or parsed) over `documents` and returns one page. */
export function runQuery(query: string | Query, documents: Iterable<object>, options: QueryOptions = {}): QueryPage {
  const q = typeof query === 'string' ? parseQuery(query) : query
  const pageSize = options.pageSize ?? 100
  if (!Number.isInteger(pageSize) || pageSize < 1) throw new RangeError('pageSize must be a positive integer')
  const offset = options.continuation ? decodeContinuation(q, options.continuation) : 0
  const limit = q.top ?? Infinity
  const itemType: ItemType = q.select !== '*' ? 'raw' : q.from === 'devices.jobs' ? 'deviceJob' : 'twin'

  if (isAggregateQuery(q)) {
    const groups = new Map<string, Value[]>()
    if (!q.groupBy) groups.set('', [])
    for (const doc of documents) {
      if (!matches(q, doc as Value)) continue
      const key = q.groupBy ? JSON.stringify(q.groupBy.map((p) => resolvePath(doc as Value, p).value ?? { undefined: true })) : ''
      let g = groups.get(key)
      if (!g) groups.set(key, g = [])
      g.push(doc as Value)
    }
    const all = [...groups.values()].map((docs) => aggregate(q, docs))
    const end = Math.min(all.length, limit)
    const items = all.slice(offset, Math.min(offset + pageSize, end))
    const next = offset + items.length
    return { items, continuation: next < end ? encodeContinuation(q, next) : undefined, itemType }
  }
  // stream: keep only this page's items; one more match tells whether another page follows
  const items: object[] = []
  const stop = Math.min(offset + pageSize, limit)
  let index = 0
  let more = false
  let bytes = 0
  const maxBytes = options.maxPageBytes ?? Infinity
  for (const doc of documents) {
    if (!matches(q, doc as Value)) continue
    if (index >= stop) { more = index < limit; break }
    if (index >= offset) {
      const item = q.select === '*' ? doc : project(q.select, doc as Value)
      if (maxBytes !== Infinity) {
        bytes += JSON.stringify(item).length
        if (items.length > 0 && bytes > maxBytes) { more = true; break }
      }
      items.push(item)
    }
    index++
  }
  return { items, continuation: more ? encodeContinuation(q, offset + items.length) : undefined, itemType }
}

/** Runs every page and concatenates the items (tests, small collections). */
export function runQueryAll(query: string, documents: Iterable<object>, pageSize = 100): object[] {
  const q = parseQuery(query)
  const items: object[] = []
  let continuation: string | undefined
  do {
    const page = runQuery(q, documents, { pageSize, continuation })
    items.push(...page.items)
    continuation = page.continuation
  } while (continuation !== undefined)
  return items
}
