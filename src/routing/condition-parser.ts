// Route condition text → expression tree (src/query-common/ast.ts), or a QuerySyntaxError with
// line, column and offset. Names: `$body.a.b[0]` (message body), `$twin.tags.x` /
// `$twin.properties.desired.x` (sender's twin), `$contentType` and other system properties (a `$name`
// the message lacks falls back to the application property `name`), bare `name` (application
// property, case-insensitive). Functions and operators: src/query-common/functions.ts, values.ts.
// Choices where routing.md is uncertain:
// - An empty or all-blank condition means `true` (ARM's default when `condition` is omitted).
// - `IN` / `NIN` with constant lists are accepted (reported broken in Azure in 2018; harmless to
//   support, and the twin query language has them).
// - Both quote styles are accepted for strings.
import type { Expr } from '../query-common/ast.js'
import { ExpressionParser } from '../query-common/expression-parser.js'

export type { Expr } from '../query-common/ast.js'

export function parseCondition(source: string): Expr {
  if (source.trim() === '') return { kind: 'literal', value: true, pos: 0 }
  const parser = new ExpressionParser(source, 'route')
  const e = parser.parseExpression()
  parser.expectEnd()
  return e
}
