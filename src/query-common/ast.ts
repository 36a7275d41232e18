// The expression tree shared by route conditions and query WHERE clauses.

export type Literal = undefined | null | boolean | number | string
/** A member name or an array index. */
export type Segment = string | number

/**
 * Where a path starts:
 * - `app`: an application property (route conditions, bare names); `name` is the whole dotted name
 * - `sys`: a system property (`$contentType`), falling back to the app property of that name
 * - `body`, `twin`: `$body...`, `$twin...` (route conditions)
 * - `doc`: the queried document (twin queries)
 */
export type PathRoot = 'app' | 'sys' | 'body' | 'twin' | 'doc'

export type BinaryOp = 'AND' | 'OR' | '=' | '!=' | '<' | '<=' | '>' | '>=' | '+' | '-' | '*' | '/' | '%'

export type Expr =
  | { kind: 'literal'; value: Literal; pos: number }
  | { kind: 'path'; root: PathRoot; name: string; segments: Segment[]; pos: number }
  | { kind: 'unary'; op: '-' | 'NOT'; operand: Expr; pos: number }
  | { kind: 'binary'; op: BinaryOp; left: Expr; right: Expr; pos: number }
  | { kind: 'in'; negated: boolean; operand: Expr; list: Literal[]; pos: number }
  /** An array constant outside IN (query dialect only, e.g. ARRAY_CONTAINS(['a', 'b'], x)). */
  | { kind: 'array'; items: Literal[]; pos: number }
  | { kind: 'call'; fn: string; args: Expr[]; pos: number }

/** Renders an expression back to source (tests and error messages); fully parenthesised. */
export function exprToString(e: Expr): string {
  switch (e.kind) {
    case 'literal': return e.value === undefined ? 'undefined' : JSON.stringify(e.value)
    case 'path': {
      const head = e.root === 'app' ? e.name : e.root === 'sys' ? `$${e.name}` : e.root === 'doc' ? '' : `$${e.root}`
      let s = head
      for (const seg of e.segments) s += typeof seg === 'number' ? `[${seg}]` : (s === '' ? seg : `.${seg}`)
      return s
    }
    case 'unary': return e.op === 'NOT' ? `(NOT ${exprToString(e.operand)})` : `(-${exprToString(e.operand)})`
    case 'binary': return `(${exprToString(e.left)} ${e.op} ${exprToString(e.right)})`
    case 'in': return `(${exprToString(e.operand)} ${e.negated ? 'NIN' : 'IN'} [${e.list.map((v) => v === undefined ? 'undefined' : JSON.stringify(v)).join(', ')}])`
    case 'call': return `${e.fn}(${e.args.map(exprToString).join(', ')})`
    case 'array': return `[${e.items.map((v) => v === undefined ? 'undefined' : JSON.stringify(v)).join(', ')}]`
  }
}
