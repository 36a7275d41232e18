// IoT Hub query text → Query (query-language.md):
//   SELECT [TOP n] * | element [AS alias] {, element [AS alias]}
//   FROM devices | devices.modules | devices.jobs [WHERE condition] [GROUP BY path {, path}]
// element: attribute path (`properties.reported.x`, `tags.[[group]]`) or COUNT() / AVG(path) /
// SUM(path) / MIN(path) / MAX(path). Keywords case-insensitive. Errors: QuerySyntaxError with
// line/column. Rules enforced: ≤ 8192 characters; GROUP BY only on `devices`; with GROUP BY every
// non-aggregate element must be a grouped path; without it aggregates cannot mix with paths;
// `devices.jobs` takes only SELECT * (paths there are written `devices.jobs.<field>`).
// Choices (spec uncertain): several GROUP BY paths allowed; TOP caps the whole result across pages;
// ORDER BY is not supported (a syntax error).
import type { Expr, Segment } from '../query-common/ast.js'
import { ExpressionParser } from '../query-common/expression-parser.js'

export const MAX_QUERY_LENGTH = 8192

export type Collection = 'devices' | 'devices.modules' | 'devices.jobs'
export type AggregateFn = 'COUNT' | 'AVG' | 'SUM' | 'MIN' | 'MAX'

export type Projection =
  | { kind: 'path'; path: Segment[]; alias?: string; pos: number }
  | { kind: 'aggregate'; fn: AggregateFn; path?: Segment[]; alias?: string; pos: number }

export interface Query {
  source: string
  top?: number
  /** '*' or the projection list. */
  select: '*' | Projection[]
  from: Collection
  where?: Expr
  groupBy?: Segment[][]
}

const AGGREGATES = new Set(['COUNT', 'AVG', 'SUM', 'MIN', 'MAX'])

function pathKey(path: Segment[]): string {
  return path.map((s) => typeof s === 'number' ? `[${s}]` : s.toLowerCase()).join('.')
}

class QueryParser extends ExpressionParser {
  constructor(source: string) {
    super(source, 'query')
  }

  parseQuery(): Query {
    if (this.source.length > MAX_QUERY_LENGTH) this.fail(`the query is longer than ${MAX_QUERY_LENGTH} characters`, MAX_QUERY_LENGTH)
    if (!this.keyword('SELECT')) this.fail(`expected SELECT but found ${this.describe(this.peek())}`)
    const query: Query = { source: this.source, select: '*', from: 'devices' }
    if (this.keyword('TOP')) {
      const t = this.next()
      if (t.kind !== 'number' || !Number.isInteger(t.value) || t.value! < 0) this.fail('TOP needs a non-negative integer', t.pos)
      query.top = t.value!
    }
    if (!this.op('*')) query.select = this.parseProjections()
    if (!this.keyword('FROM')) this.fail(`expected FROM but found ${this.describe(this.peek())}`)
    query.from = this.parseCollection()
    if (this.keyword('WHERE')) query.where = this.parseExpression()
    if (this.isKeyword('GROUP')) {
      const pos = this.next().pos
      if (!this.keyword('BY')) this.fail(`expected BY after GROUP but found ${this.describe(this.peek())}`)
      if (query.from !== 'devices') this.fail('GROUP BY is supported only on devices', pos)
      query.groupBy = []
      do query.groupBy.push(this.parsePlainPath())
      while (this.op(','))
    }
    if (this.isKeyword('ORDER')) this.fail('ORDER BY is not supported')
    this.expectEnd()
    this.validate(query)
    if (query.from === 'devices.jobs' && query.where) query.where = stripJobsPrefix(query.where)
    return query
  }

  private parseProjections(): Projection[] {
    const list: Projection[] = []
    do {
      const t = this.peek()
      if (t.kind !== 'name' || this.isReserved(t)) this.fail(`expected a property path or an aggregate but found ${this.describe(t)}`)
      let p: Projection
      const upper = t.text.toUpperCase()
      if (!t.escaped && AGGREGATES.has(upper) && this.peek(1).kind === 'op' && this.peek(1).text === '(') {
        this.next(); this.next()
        if (upper === 'COUNT') {
          this.op('*') // COUNT(*) is read as COUNT()
          this.expectOp(')', 'after COUNT(')
          p = { kind: 'aggregate', fn: 'COUNT', pos: t.pos }
        } else {
          const path = this.parsePlainPath()
          this.expectOp(')', `to close ${upper}(`)
          p = { kind: 'aggregate', fn: upper as AggregateFn, path, pos: t.pos }
        }
      } else {
        p = { kind: 'path', path: this.parsePlainPath(), pos: t.pos }
      }
      if (this.keyword('AS')) {
        const alias = this.next()
        if (alias.kind !== 'name' || (this.isReserved(alias) && !alias.escaped)) this.fail(`expected an alias after AS but found ${this.describe(alias)}`, alias.pos)
        p.alias = alias.text
      }
      list.push(p)
    } while (this.op(','))
    return list
  }

  private parsePlainPath(): Segment[] {
    const t = this.peek()
    if (t.kind !== 'name' || this.isReserved(t)) this.fail(`expected a property path but found ${this.describe(t)}`)
    return this.parsePathSegments()
  }

  private parseCollection(): Collection {
    const t = this.next()
    if (t.kind !== 'name' || t.text.toLowerCase() !== 'devices') this.fail(`expected devices, devices.modules or devices.jobs but found ${this.describe(t)}`, t.pos)
    if (!this.op('.')) return 'devices'
    const sub = this.next()
    const lower = sub.kind === 'name' ? sub.text.toLowerCase() : ''
    if (lower === 'modules') return 'devices.modules'
    if (lower === 'jobs') return 'devices.jobs'
    this.fail(`unknown collection 'devices.${sub.text}'`, sub.pos)
  }

  private validate(q: Query): void {
    const select = q.select
    if (q.from === 'devices.jobs' && select !== '*') this.fail('devices.jobs queries support only SELECT *', 0)
    if (select === '*') {
      if (q.groupBy) this.fail('SELECT * cannot be used with GROUP BY', 0)
      return
    }
    const hasAggregate = select.some((p) => p.kind === 'aggregate')
    if (q.groupBy) {
      const grouped = new Set(q.groupBy.map(pathKey))
      for (const p of select) {
        if (p.kind === 'path' && !grouped.has(pathKey(p.path))) this.fail('a projected property must appear in GROUP BY or be aggregated', p.pos)
      }
    } else if (hasAggregate) {
      const plain = select.find((p) => p.kind === 'path')
      if (plain) this.fail('a projected property must appear in GROUP BY or be aggregated', plain.pos)
    }
  }
}

function stripJobsPrefix(e: Expr): Expr {
  switch (e.kind) {
    case 'path': {
      const s = e.segments
      const prefixed = s.length > 2 && String(s[0]).toLowerCase() === 'devices' && String(s[1]).toLowerCase() === 'jobs'
      return prefixed ? { ...e, segments: s.slice(2) } : e
    }
    case 'unary': return { ...e, operand: stripJobsPrefix(e.operand) }
    case 'binary': return { ...e, left: stripJobsPrefix(e.left), right: stripJobsPrefix(e.right) }
    case 'in': return { ...e, operand: stripJobsPrefix(e.operand) }
    case 'call': return { ...e, args: e.args.map(stripJobsPrefix) }
    default: return e
  }
}

/** Parses a query; throws QuerySyntaxError with the position. */
export function parseQuery(source: string): Query {
  return new QueryParser(source).parseQuery()
}
