// Recursive-descent parser of the expression sub-language shared by route conditions and query
// WHERE clauses. Precedence, loosest first: OR; AND; NOT; comparisons (= != <> < <= > >= IN NIN);
// + -; * / %; unary -. Keywords are case-insensitive.
// Dialects differ only in what a name means:
// - `route`: `$body.a[0].b`, `$twin.tags.x`, `$sysProp`, bare `appProp` (a dotted bare name
//   `a.b` is one application property called "a.b": app property values are strings, so a member
//   path into one could never yield anything).
// - `query`: a path into the queried document (`properties.reported.x`, `tags.[[group]]`).
import type { BinaryOp, Expr, Literal, Segment } from './ast.js'
import { QuerySyntaxError } from './errors.js'
import { lookupFunction } from './functions.js'
import { tokenize, type Token } from './lexer.js'

export type Dialect = 'route' | 'query'

const EXPRESSION_KEYWORDS = new Set(['AND', 'OR', 'NOT', 'IN', 'NIN', 'TRUE', 'FALSE', 'NULL', 'UNDEFINED'])
const QUERY_KEYWORDS = new Set(['SELECT', 'FROM', 'WHERE', 'GROUP', 'BY', 'AS', 'TOP', 'ORDER'])
const COMPARISONS = new Set(['=', '!=', '<>', '<', '<=', '>', '>='])
const MAX_DEPTH = 120

export class ExpressionParser {
  readonly tokens: Token[]
  i = 0
  private depth = 0

  constructor(readonly source: string, readonly dialect: Dialect) {
    this.tokens = tokenize(source)
  }

  peek(offset = 0): Token {
    return this.tokens[Math.min(this.i + offset, this.tokens.length - 1)]!
  }

  next(): Token {
    const t = this.peek()
    if (t.kind !== 'eof') this.i++
    return t
  }

  fail(detail: string, pos: number = this.peek().pos): never {
    throw new QuerySyntaxError(detail, this.source, pos)
  }

  describe(t: Token): string {
    return t.kind === 'eof' ? 'end of input' : t.kind === 'string' ? `string '${t.text}'` : `'${t.text}'`
  }

  /** True (and consumes it) if the next token is the keyword `word`. */
  keyword(word: string): boolean {
    const t = this.peek()
    if (t.kind === 'name' && !t.escaped && t.text.toUpperCase() === word) { this.i++; return true }
    return false
  }

  isKeyword(word: string, offset = 0): boolean {
    const t = this.peek(offset)
    return t.kind === 'name' && !t.escaped && t.text.toUpperCase() === word
  }

  op(text: string): boolean {
    const t = this.peek()
    if (t.kind === 'op' && t.text === text) { this.i++; return true }
    return false
  }

  expectOp(text: string, context: string): void {
    if (!this.op(text)) this.fail(`expected '${text}' ${context} but found ${this.describe(this.peek())}`)
  }

  expectEnd(): void {
    const t = this.peek()
    if (t.kind !== 'eof') this.fail(`unexpected ${this.describe(t)} after the end of the expression`)
  }

  isReserved(t: Token): boolean {
    if (t.kind !== 'name' || t.escaped) return false
    const upper = t.text.toUpperCase()
    return EXPRESSION_KEYWORDS.has(upper) || (this.dialect === 'query' && QUERY_KEYWORDS.has(upper))
  }

  parseExpression(): Expr {
    if (++this.depth > MAX_DEPTH) this.fail('expression nested too deeply')
    const e = this.parseOr()
    this.depth--
    return e
  }

  private parseOr(): Expr {
    let left = this.parseAnd()
    while (this.isKeyword('OR')) {
      const pos = this.next().pos
      left = { kind: 'binary', op: 'OR', left, right: this.parseAnd(), pos }
    }
    return left
  }

  private parseAnd(): Expr {
    let left = this.parseNot()
    while (this.isKeyword('AND')) {
      const pos = this.next().pos
      left = { kind: 'binary', op: 'AND', left, right: this.parseNot(), pos }
    }
    return left
  }

  private parseNot(): Expr {
    if (this.isKeyword('NOT')) {
      const pos = this.next().pos
      if (++this.depth > MAX_DEPTH) this.fail('expression nested too deeply')
      const operand = this.parseNot()
      this.depth--
      return { kind: 'unary', op: 'NOT', operand, pos }
    }
    return this.parseComparison()
  }

  private parseComparison(): Expr {
    let left = this.parseAdditive()
    for (;;) {
      const t = this.peek()
      if (t.kind === 'op' && COMPARISONS.has(t.text)) {
        this.next()
        const op = (t.text === '<>' ? '!=' : t.text) as BinaryOp
        left = { kind: 'binary', op, left, right: this.parseAdditive(), pos: t.pos }
      } else if (this.isKeyword('IN') || this.isKeyword('NIN')) {
        this.next()
        left = { kind: 'in', negated: t.text.toUpperCase() === 'NIN', operand: left, list: this.parseArrayConstant(), pos: t.pos }
      } else {
        return left
      }
    }
  }

  private parseAdditive(): Expr {
    let left = this.parseMultiplicative()
    for (;;) {
      const t = this.peek()
      if (t.kind !== 'op' || (t.text !== '+' && t.text !== '-')) return left
      this.next()
      left = { kind: 'binary', op: t.text, left, right: this.parseMultiplicative(), pos: t.pos }
    }
  }

  private parseMultiplicative(): Expr {
    let left = this.parseUnary()
    for (;;) {
      const t = this.peek()
      if (t.kind !== 'op' || (t.text !== '*' && t.text !== '/' && t.text !== '%')) return left
      this.next()
      left = { kind: 'binary', op: t.text, left, right: this.parseUnary(), pos: t.pos }
    }
  }

  private parseUnary(): Expr {
    const t = this.peek()
    if (t.kind === 'op' && (t.text === '-' || t.text === '+')) {
      this.next()
      if (++this.depth > MAX_DEPTH) this.fail('expression nested too deeply')
      const operand = this.parseUnary()
      this.depth--
      if (t.text === '+') return operand
      if (operand.kind === 'literal' && typeof operand.value === 'number') return { kind: 'literal', value: -operand.value, pos: t.pos }
      return { kind: 'unary', op: '-', operand, pos: t.pos }
    }
    return this.parsePrimary()
  }

  /** `[c, c, ...]` of constants (IN / NIN); a leading '-' negates a number. */
  parseArrayConstant(): Literal[] {
    this.expectOp('[', 'to open the list')
    const items: Literal[] = []
    if (this.op(']')) return items
    do {
      const t = this.peek()
      if (t.kind === 'op' && t.text === '-' && this.peek(1).kind === 'number') {
        this.next()
        items.push(-this.next().value!)
        continue
      }
      const e = this.parsePrimary()
      if (e.kind !== 'literal') this.fail('lists may hold only constants', e.pos)
      items.push(e.value)
    } while (this.op(','))
    this.expectOp(']', 'to close the list')
    return items
  }

  private parsePrimary(): Expr {
    const t = this.peek()
    if (t.kind === 'number') { this.next(); return { kind: 'literal', value: t.value!, pos: t.pos } }
    if (t.kind === 'string') { this.next(); return { kind: 'literal', value: t.text, pos: t.pos } }
    if (t.kind === 'op' && t.text === '(') {
      this.next()
      const e = this.parseExpression()
      this.expectOp(')', 'to close the parenthesis')
      return e
    }
    if (t.kind === 'op' && t.text === '[') {
      if (this.dialect === 'route') this.fail('array constants are only allowed after IN / NIN in route conditions')
      return { kind: 'array', items: this.parseArrayConstant(), pos: t.pos }
    }
    if (t.kind === 'name') {
      if (!t.escaped) {
        const upper = t.text.toUpperCase()
        if (upper === 'TRUE' || upper === 'FALSE') { this.next(); return { kind: 'literal', value: upper === 'TRUE', pos: t.pos } }
        if (upper === 'NULL') { this.next(); return { kind: 'literal', value: null, pos: t.pos } }
        if (upper === 'UNDEFINED') { this.next(); return { kind: 'literal', value: undefined, pos: t.pos } }
      }
      const after = this.peek(1)
      if (!t.escaped && after.kind === 'op' && after.text === '(') return this.parseCall()
      if (this.isReserved(t)) this.fail(`unexpected keyword '${t.text}': expected an expression`)
      return this.parsePath()
    }
    if (t.kind === 'eof') this.fail('unexpected end of input: expected an expression')
    this.fail(`unexpected ${this.describe(t)}: expected an expression`)
  }

  private parseCall(): Expr {
    const nameToken = this.next()
    this.next() // '('
    const spec = lookupFunction(nameToken.text)
    if (!spec || (this.dialect === 'route' && !spec.routes)) this.fail(`unknown function '${nameToken.text}'`, nameToken.pos)
    const args: Expr[] = []
    if (!this.op(')')) {
      do args.push(this.parseExpression())
      while (this.op(','))
      this.expectOp(')', `to close the call of ${spec.name}`)
    }
    if (args.length < spec.minArgs || args.length > spec.maxArgs) {
      const want = spec.minArgs === spec.maxArgs ? `${spec.minArgs}` : spec.maxArgs > 10 ? `at least ${spec.minArgs}` : `${spec.minArgs} to ${spec.maxArgs}`
      this.fail(`${spec.name} takes ${want} argument${want === '1' ? '' : 's'}, got ${args.length}`, nameToken.pos)
    }
    return { kind: 'call', fn: spec.name, args, pos: nameToken.pos }
  }

  /** name {'.' name | '[' index ']'} */
  parsePathSegments(): Segment[] {
    const segments: Segment[] = [this.next().text]
    for (;;) {
      if (this.op('.')) {
        const t = this.next()
        if (t.kind !== 'name') this.fail(`expected a property name after '.' but found ${this.describe(t)}`, t.pos)
        segments.push(t.text)
      } else if (this.peek().kind === 'op' && this.peek().text === '[') {
        const open = this.next()
        const t = this.next()
        if (t.kind !== 'number' || !Number.isInteger(t.value) || t.value! < 0) this.fail('array index must be a non-negative integer', t.kind === 'eof' ? open.pos : t.pos)
        segments.push(t.value!)
        this.expectOp(']', 'to close the array index')
      } else {
        return segments
      }
    }
  }

  private parsePath(): Expr {
    const first = this.peek()
    const segments = this.parsePathSegments()
    if (this.dialect === 'query') return { kind: 'path', root: 'doc', name: '', segments, pos: first.pos }
    const head = segments[0] as string
    if (!first.escaped && head.startsWith('$')) {
      const lower = head.toLowerCase()
      if (lower === '$body' || lower === '$twin') return { kind: 'path', root: lower === '$body' ? 'body' : 'twin', name: '', segments: segments.slice(1), pos: first.pos }
      if (head.length === 1) this.fail("expected a property name after '$'", first.pos)
      const { name, rest } = joinLeadingNames(segments)
      return { kind: 'path', root: 'sys', name: name.slice(1), segments: rest, pos: first.pos }
    }
    const { name, rest } = joinLeadingNames(segments)
    return { kind: 'path', root: 'app', name, segments: rest, pos: first.pos }
  }
}

function joinLeadingNames(segments: Segment[]): { name: string; rest: Segment[] } {
  let k = 1
  while (k < segments.length && typeof segments[k] === 'string') k++
  return { name: segments.slice(0, k).join('.'), rest: segments.slice(k) }
}
