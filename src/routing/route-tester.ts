// Route conditions tried against a sample message without routing it (ARM's testRoute and testAll,
// routing.md "Test APIs"): compiled as a saved route would be and evaluated on the same WASM route VM,
// each call with its own name interner so that names only ever tested leave no trace in the hub's.
import { compileCondition, type CompiledCondition } from './condition-compiler.js'
import { NameInterner } from './name-interner.js'
import { QuerySyntaxError } from '../query-common/errors.js'
import type { RouteMessage } from './route-message.js'
import type { RouteDef } from './routing-config.js'
import { evaluateOnce } from '../wasm/wasm-route-vm.js'

/** ARM's TestResultStatus: a condition that is not exactly true or false (a missing property, a type mismatch) is `undefined`. */
export type TestResultStatus = 'true' | 'false' | 'undefined'

/** ARM's RouteCompilationError; the parser knows where an error starts, so it ends there too. */
export interface RouteCompilationError {
  message: string
  severity: 'error'
  location: { start: { line: number; column: number }; end: { line: number; column: number } }
}

export interface ConditionTest {
  result: TestResultStatus
  details: { compilationErrors: RouteCompilationError[] }
}

function compilationError(e: unknown): RouteCompilationError {
  const at = e instanceof QuerySyntaxError ? { line: e.line, column: e.column } : { line: 1, column: 1 }
  return { message: (e as Error).message, severity: 'error', location: { start: at, end: at } }
}

const status = (v: unknown): TestResultStatus => (v === true ? 'true' : v === false ? 'false' : 'undefined')

/** One condition against one message: its result, or `undefined` with the reason it does not compile. */
export function testCondition(condition: string, message: RouteMessage): ConditionTest {
  const interner = new NameInterner()
  let program: CompiledCondition
  try {
    program = compileCondition(condition, interner)
  } catch (e) {
    return { result: 'undefined', details: { compilationErrors: [compilationError(e)] } }
  }
  return { result: status(evaluateOnce([program], message, interner)[0]), details: { compilationErrors: [] } }
}

/** The routes (already validated, so they compile) whose condition is true for the message. */
export function matchingRoutes(routes: readonly RouteDef[], message: RouteMessage): RouteDef[] {
  if (routes.length === 0) return []
  const interner = new NameInterner()
  const programs = routes.map((r) => compileCondition(r.condition, interner))
  const values = evaluateOnce(programs, message, interner)
  return routes.filter((_, k) => values[k] === true)
}
