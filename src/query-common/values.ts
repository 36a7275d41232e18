// Operator semantics of the IoT Hub expression language over JSON values, the reference that the
// WASM VM (asm/route-vm.ts) reproduces bit for bit. Derived from the DocumentDB SQL dialect the
// hub's language comes from, as routing.md and query-language.md describe it:
// - `undefined` is a value: a missing property, a type mismatch, a failed function.
// - Comparisons only between primitives of the same type (number/number, string/string by UTF-16
//   code units, bool/bool with false < true, null/null equal); anything else → undefined.
// - Arithmetic only on numbers; a non-finite result (x/0, overflow) → undefined (JSON has no ∞).
// - AND/OR/NOT are three-valued over true/false/undefined; non-booleans count as undefined.
// - A condition holds only when it evaluates to exactly `true`.

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue }
export type Value = JsonValue | undefined

export function isPrimitive(v: Value): v is null | boolean | number | string {
  return v === null || typeof v === 'boolean' || typeof v === 'number' || typeof v === 'string'
}

/** -1, 0, 1, or undefined when the two are not comparable. */
export function compareValues(a: Value, b: Value): number | undefined {
  if (a === null) return b === null ? 0 : undefined
  const ta = typeof a
  if (ta !== typeof b || (ta !== 'number' && ta !== 'string' && ta !== 'boolean')) return undefined
  const x = a as number | string | boolean, y = b as number | string | boolean
  return x < y ? -1 : x > y ? 1 : 0
}

export function comparison(op: string, a: Value, b: Value): boolean | undefined {
  const c = compareValues(a, b)
  if (c === undefined) return undefined
  switch (op) {
    case '=': return c === 0
    case '!=': return c !== 0
    case '<': return c < 0
    case '<=': return c <= 0
    case '>': return c > 0
    default: return c >= 0 // '>='
  }
}

export function finite(x: number): number | undefined {
  return Number.isFinite(x) ? x : undefined
}

export function arithmetic(op: string, a: Value, b: Value): number | undefined {
  if (typeof a !== 'number' || typeof b !== 'number') return undefined
  switch (op) {
    case '+': return finite(a + b)
    case '-': return finite(a - b)
    case '*': return finite(a * b)
    case '/': return finite(a / b)
    default: return finite(a % b) // '%'
  }
}

export function negate(a: Value): number | undefined {
  return typeof a === 'number' ? -a : undefined
}

export function and(a: Value, b: Value): boolean | undefined {
  if (a === false || b === false) return false
  return a === true && b === true ? true : undefined
}

export function or(a: Value, b: Value): boolean | undefined {
  if (a === true || b === true) return true
  return a === false && b === false ? false : undefined
}

export function not(a: Value): boolean | undefined {
  return a === true ? false : a === false ? true : undefined
}

/** `x IN [...]`: undefined for a non-primitive x, else whether some element compares equal. */
export function inList(x: Value, list: readonly Value[]): boolean | undefined {
  if (!isPrimitive(x)) return undefined
  for (const item of list) if (compareValues(x, item) === 0) return true
  return false
}

/** Member access: only objects have members, only arrays have elements. */
export function member(v: Value, key: string): Value {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return undefined
  return Object.prototype.hasOwnProperty.call(v, key) ? (v as Record<string, JsonValue>)[key] : undefined
}

export function element(v: Value, index: number): Value {
  return Array.isArray(v) && index < v.length ? v[index] : undefined
}
