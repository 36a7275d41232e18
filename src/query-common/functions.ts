// Built-in functions of the IoT Hub expression language (routing.md "Functions",
// query-language.md "Functions"), with ids the bytecode and the WASM VM use.
// Choices where the spec is uncertain:
// - Names are case-insensitive; STARTSWITH/STARTS_WITH and ENDSWITH/ENDS_WITH are accepted in both
//   languages (query-language.md recommends it); CONTAINS too.
// - Every routing function is also accepted in queries (the twin engine's list is not known;
//   accepting more never breaks a working Azure query). ARRAY_CONTAINS(array, value) is query-only.
// - IS_DEFINED is true for any value including objects and arrays (routing.md says only primitives
//   are "supported"; users test object paths such as `is_defined($body.properties.desired.x)`).
// - Wrong argument types → undefined. AS_NUMBER accepts JSON number syntax only (no spaces, no
//   '+', no hex). SUBSTRING truncates start/length toward zero and clamps them to the string.
// - LENGTH, SUBSTRING, INDEX_OF count UTF-16 code units; LOWER/UPPER are full Unicode.
// - CONCAT, LOWER and UPPER build at most STRING_BUDGET code units in one evaluation (4 × the largest
//   message body); past it they are undefined: nested CONCATs over a 256 KB body would otherwise make
//   the hub copy gigabytes for one message.
import { compareValues, finite, isPrimitive, type Value } from './values.js'

export interface FunctionSpec {
  id: number
  name: string
  minArgs: number
  maxArgs: number
  routes: boolean
  impl: (args: Value[]) => Value
}

/** Code units CONCAT, LOWER and UPPER may build in one evaluation (of a route condition, or of a query over one document). */
export const STRING_BUDGET = 1 << 20
let budget = STRING_BUDGET
/** Called as an evaluation starts. */
export function resetStringBudget(): void {
  budget = STRING_BUDGET
}
/** Takes `units` from the budget; false (and the budget spent) once it would run out. */
function spend(units: number): boolean {
  if (units > budget) { budget = 0; return false }
  budget -= units
  return true
}
// toUpperCase can make up to three code units of one (ß → SS, ΐ → Ϊ́)
const changeCase = (upper: boolean) => (a: Value[]) => typeof a[0] === 'string' && spend(a[0].length * (upper ? 3 : 2)) ? (upper ? a[0].toUpperCase() : a[0].toLowerCase()) : undefined

function concat(a: Value[]): Value {
  if (!a.every((x) => typeof x === 'string')) return undefined
  let total = 0
  for (const s of a as string[]) total += s.length
  return spend(total) ? (a as string[]).join('') : undefined
}

const num = (f: (x: number) => number) => (a: Value[]) => typeof a[0] === 'number' ? finite(f(a[0])) : undefined
const str2 = (f: (s: string, t: string) => Value) => (a: Value[]) => typeof a[0] === 'string' && typeof a[1] === 'string' ? f(a[0], a[1]) : undefined
const NUMBER_SYNTAX = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/

export function asNumber(v: Value): number | undefined {
  if (typeof v === 'number') return v
  if (typeof v !== 'string' || !NUMBER_SYNTAX.test(v)) return undefined
  return finite(Number(v))
}

function substring(a: Value[]): Value {
  const s = a[0], start = a[1], len = a.length > 2 ? a[2] : undefined
  if (typeof s !== 'string' || typeof start !== 'number' || (a.length > 2 && typeof len !== 'number')) return undefined
  const from = Math.min(Math.max(Math.trunc(start), 0), s.length)
  const count = len === undefined ? s.length - from : Math.min(Math.max(Math.trunc(len as number), 0), s.length - from)
  return s.substring(from, from + count)
}

const SPECS: Array<Omit<FunctionSpec, 'id'>> = [
  { name: 'ABS', minArgs: 1, maxArgs: 1, routes: true, impl: num(Math.abs) },
  { name: 'EXP', minArgs: 1, maxArgs: 1, routes: true, impl: num(Math.exp) },
  { name: 'POWER', minArgs: 2, maxArgs: 2, routes: true, impl: (a) => typeof a[0] === 'number' && typeof a[1] === 'number' ? finite(Math.pow(a[0], a[1])) : undefined },
  { name: 'SQUARE', minArgs: 1, maxArgs: 1, routes: true, impl: num((x) => x * x) },
  { name: 'CEILING', minArgs: 1, maxArgs: 1, routes: true, impl: num(Math.ceil) },
  { name: 'FLOOR', minArgs: 1, maxArgs: 1, routes: true, impl: num(Math.floor) },
  { name: 'SIGN', minArgs: 1, maxArgs: 1, routes: true, impl: num((x) => x > 0 ? 1 : x < 0 ? -1 : x) },
  { name: 'SQRT', minArgs: 1, maxArgs: 1, routes: true, impl: num(Math.sqrt) },
  { name: 'AS_NUMBER', minArgs: 1, maxArgs: 1, routes: true, impl: (a) => asNumber(a[0]) },
  { name: 'IS_ARRAY', minArgs: 1, maxArgs: 1, routes: true, impl: (a) => Array.isArray(a[0]) },
  { name: 'IS_BOOL', minArgs: 1, maxArgs: 1, routes: true, impl: (a) => typeof a[0] === 'boolean' },
  { name: 'IS_DEFINED', minArgs: 1, maxArgs: 1, routes: true, impl: (a) => a[0] !== undefined },
  { name: 'IS_NULL', minArgs: 1, maxArgs: 1, routes: true, impl: (a) => a[0] === null },
  { name: 'IS_NUMBER', minArgs: 1, maxArgs: 1, routes: true, impl: (a) => typeof a[0] === 'number' },
  { name: 'IS_OBJECT', minArgs: 1, maxArgs: 1, routes: true, impl: (a) => a[0] !== null && typeof a[0] === 'object' && !Array.isArray(a[0]) },
  { name: 'IS_PRIMITIVE', minArgs: 1, maxArgs: 1, routes: true, impl: (a) => isPrimitive(a[0]) },
  { name: 'IS_STRING', minArgs: 1, maxArgs: 1, routes: true, impl: (a) => typeof a[0] === 'string' },
  { name: 'CONCAT', minArgs: 1, maxArgs: 64, routes: true, impl: concat },
  { name: 'LENGTH', minArgs: 1, maxArgs: 1, routes: true, impl: (a) => typeof a[0] === 'string' ? a[0].length : undefined },
  { name: 'LOWER', minArgs: 1, maxArgs: 1, routes: true, impl: changeCase(false) },
  { name: 'UPPER', minArgs: 1, maxArgs: 1, routes: true, impl: changeCase(true) },
  { name: 'SUBSTRING', minArgs: 2, maxArgs: 3, routes: true, impl: substring },
  { name: 'INDEX_OF', minArgs: 2, maxArgs: 2, routes: true, impl: str2((s, t) => s.indexOf(t)) },
  { name: 'STARTS_WITH', minArgs: 2, maxArgs: 2, routes: true, impl: str2((s, t) => s.startsWith(t)) },
  { name: 'ENDS_WITH', minArgs: 2, maxArgs: 2, routes: true, impl: str2((s, t) => s.endsWith(t)) },
  { name: 'CONTAINS', minArgs: 2, maxArgs: 2, routes: true, impl: str2((s, t) => s.includes(t)) },
  { name: 'ARRAY_CONTAINS', minArgs: 2, maxArgs: 2, routes: false, impl: (a) => Array.isArray(a[0]) ? a[0].some((x) => compareValues(x, a[1]) === 0) : undefined },
]

export const FUNCTIONS: readonly FunctionSpec[] = SPECS.map((s, id) => ({ ...s, id }))
const ALIASES: Record<string, string> = { STARTSWITH: 'STARTS_WITH', ENDSWITH: 'ENDS_WITH' }
const BY_NAME = new Map(FUNCTIONS.map((f) => [f.name, f]))

/** The function a name (any case, either spelling) denotes, or undefined. */
export function lookupFunction(name: string): FunctionSpec | undefined {
  const upper = name.toUpperCase()
  return BY_NAME.get(ALIASES[upper] ?? upper)
}

export function functionById(id: number): FunctionSpec {
  return FUNCTIONS[id]!
}
