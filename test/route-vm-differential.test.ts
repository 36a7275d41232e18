// The WASM route VM against the JS reference interpreter: the same value for every conformance
// case, and for thousands of generated conditions × generated messages (fast-check).
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { compileCondition } from '../src/routing/condition-compiler.js'
import { evaluateCondition } from '../src/routing/condition-interpreter.js'
import { prepareMessage, type RouteMessage } from '../src/routing/route-message.js'
import { WASM_ARRAY, WASM_OBJECT, WasmRouteSet } from '../src/wasm/wasm-route-vm.js'
import { MESSAGE, ROUTE_CASES } from './routing-conformance-cases.js'

function shape(v: unknown): unknown {
  if (Array.isArray(v) || v === WASM_ARRAY) return 'array'
  if (v !== null && typeof v === 'object') return v === WASM_OBJECT || !('wasm' in v) ? 'object' : v
  return v
}

const seen = new Map<string, number>()

function agree(set: WasmRouteSet, message: RouteMessage): number {
  const prepared = set.loadMessage(message)
  const all = set.matchAll()
  let bails = 0
  for (let k = 0; k < set.size; k++) {
    const js = shape(evaluateCondition(set.programs[k]!, prepared))
    const wasm = shape(set.evaluateValue(k))
    if (!Object.is(js, wasm)) throw new Error(`${set.programs[k]!.source}: JS ${String(js)} (${typeof js}) vs WASM ${String(wasm)} (${typeof wasm})`)
    const kind = js === true ? 'true' : js === false ? 'false' : js === null ? 'null' : typeof js === 'string' && (js === 'array' || js === 'object') ? js : typeof js
    seen.set(kind, (seen.get(kind) ?? 0) + 1)
    expect(all[k]).toBe(js === true)
    expect(set.matches(k)).toBe(js === true)
    if (set.bails(k)) bails++
  }
  return bails
}

describe('WASM route VM vs JS interpreter', () => {
  it('agree on every conformance case', () => {
    const set = new WasmRouteSet(ROUTE_CASES.map(([c]) => c))
    const bails = agree(set, MESSAGE)
    expect(bails).toBeGreaterThan(0) // EXP, POWER, non-ASCII LOWER/UPPER, long AS_NUMBER go to JS
    expect(bails).toBeLessThan(20)
    // and the VM's values are the table's
    const prepared = prepareMessage(MESSAGE)
    ROUTE_CASES.forEach(([c, expected], k) => {
      expect(shape(set.evaluateValue(k)), c).toStrictEqual(expected)
      expect(shape(evaluateCondition(compileCondition(c), prepared)), c).toStrictEqual(expected)
    })
  })

  it('agree when the image region grows and when CONCAT outgrows the string arena', () => {
    const big = 'x'.repeat(40_000)
    const set = new WasmRouteSet(['length(concat(a, a, a)) = 120000', "$body.k[999].v = 'end'", "starts_with(concat(a, 'y'), 'xx')"])
    const body = JSON.stringify({ k: Array.from({ length: 1000 }, (_, i) => ({ v: i === 999 ? 'end' : 'filler-' + i })) })
    const bails = agree(set, { appProperties: { a: big }, systemProperties: { contentType: 'application/json', contentEncoding: 'utf-8' }, body })
    expect(bails).toBe(2) // both CONCATs need more than the 64 KB arena
    expect(set.matchAll()).toEqual([true, true, true])
  })

  // ---- generated conditions and messages ----
  const KEYS = ['a', 'b', 'c', 'Temp', 'x-y']
  const STRINGS = ['', 'a', 'abc', 'ABC', 'hot', '1', '-2.5', '1e3', '007', '0.1', '12345678901234567', 'Ünï', 'ß', 'a\'b', 'x-y']
  const str = fc.oneof(fc.constantFrom(...STRINGS), fc.string({ maxLength: 6 }))
  const num = fc.oneof(fc.integer({ min: -1000, max: 1000 }), fc.double({ noNaN: true, noDefaultInfinity: true, min: -1e6, max: 1e6 }), fc.constantFrom(0, -0, 0.5, 1e300, 2 ** 53))
  const jsonValue = fc.letrec<{ v: unknown }>((tie) => ({
    v: fc.oneof({ depthSize: 'small', withCrossShrink: true },
      num, str, fc.boolean(), fc.constant(null),
      fc.array(tie('v'), { maxLength: 3 }),
      fc.dictionary(fc.constantFrom(...KEYS), tie('v'), { maxKeys: 4 })),
  })).v
  const message: fc.Arbitrary<RouteMessage> = fc.record({
    systemProperties: fc.record({
      contentType: fc.constantFrom('application/json', 'Application/Json; charset=utf-8', 'text/plain'),
      contentEncoding: fc.constantFrom('utf-8', 'UTF-8', 'ascii'),
      messageId: str, connectionDeviceId: fc.constantFrom('dev-1', 'Dev-2'),
    }, { requiredKeys: ['contentType', 'contentEncoding'] }),
    appProperties: fc.dictionary(fc.constantFrom(...KEYS, 'A', 'messageId'), str, { maxKeys: 5 }),
    body: fc.dictionary(fc.constantFrom(...KEYS), jsonValue, { maxKeys: 5 }).map((b) => JSON.stringify(b)),
    twin: fc.record({ tags: fc.dictionary(fc.constantFrom(...KEYS), jsonValue, { maxKeys: 3 }), properties: fc.record({ desired: fc.dictionary(fc.constantFrom(...KEYS), jsonValue, { maxKeys: 3 }) }) }),
  })

  const literal = fc.oneof(
    num.map((n) => Object.is(n, -0) ? '-0' : String(n)),
    fc.constantFrom(...STRINGS).map((s) => `'${s.replace(/'/g, "\\'")}'`),
    fc.constantFrom('true', 'false', 'null', 'undefined'))
  const pathSeg = fc.oneof(fc.constantFrom(...KEYS).map((k) => `.${k === 'x-y' ? '[[x-y]]' : k}`), fc.integer({ min: 0, max: 3 }).map((i) => `[${i}]`))
  const path = fc.oneof(
    fc.array(pathSeg, { minLength: 1, maxLength: 3 }).map((s) => `$body${s.join('')}`),
    fc.array(pathSeg, { maxLength: 2 }).map((s) => `$twin.tags${s.join('')}`),
    fc.constantFrom(...KEYS, 'A', '$messageId', '$connectionDeviceId', '$contentType', '$a', '$nosuch', '$body', '$twin.properties.desired'))
  const FUNCTIONS: Array<[string, number]> = [['ABS', 1], ['EXP', 1], ['POWER', 2], ['SQUARE', 1], ['CEILING', 1], ['FLOOR', 1], ['SIGN', 1],
    ['SQRT', 1], ['AS_NUMBER', 1], ['IS_ARRAY', 1], ['IS_BOOL', 1], ['IS_DEFINED', 1], ['IS_NULL', 1], ['IS_NUMBER', 1], ['IS_OBJECT', 1],
    ['IS_PRIMITIVE', 1], ['IS_STRING', 1], ['CONCAT', 2], ['CONCAT', 3], ['LENGTH', 1], ['LOWER', 1], ['UPPER', 1], ['SUBSTRING', 2],
    ['SUBSTRING', 3], ['INDEX_OF', 2], ['STARTS_WITH', 2], ['ENDSWITH', 2], ['CONTAINS', 2]]
  const OPS = ['AND', 'OR', '=', '!=', '<>', '<', '<=', '>', '>=', '+', '-', '*', '/', '%']
  // typed sub-expressions, so functions mostly get arguments of the type they work on
  const strLit = fc.constantFrom(...STRINGS).map((v) => `'${v.replace(/'/g, "\\'")}'`)
  const smallNum = fc.oneof(fc.integer({ min: -3, max: 12 }), fc.constantFrom(0.5, 2.7, -1.5)).map((n) => `(${n})`)
  const strExpr = fc.letrec<{ s: string }>((tie) => ({
    s: fc.oneof({ depthSize: 'small' }, strLit, strLit, fc.constantFrom('a', 'b', 'A', '$messageId', '$connectionDeviceId', '$body.a', '$twin.tags.b'),
      tie('s').map((v) => `lower(${v})`), tie('s').map((v) => `upper(${v})`),
      fc.tuple(tie('s'), tie('s')).map(([x, y]) => `concat(${x}, ${y})`),
      fc.tuple(tie('s'), smallNum, fc.option(smallNum)).map(([x, i, n]) => n === null ? `substring(${x}, ${i})` : `substring(${x}, ${i}, ${n})`)),
  })).s
  const numExpr = fc.letrec<{ n: string }>((tie) => ({
    n: fc.oneof({ depthSize: 'small' }, smallNum, num.map((n) => `(${Object.is(n, -0) ? '-0' : n})`), fc.constantFrom('$body.Temp', '$body.a', '$twin.tags.c'),
      strExpr.map((v) => `as_number(${v})`), strExpr.map((v) => `length(${v})`),
      fc.tuple(strExpr, strExpr).map(([x, y]) => `index_of(${x}, ${y})`),
      fc.tuple(tie('n'), fc.constantFrom('+', '-', '*', '/', '%'), tie('n')).map(([x, op, y]) => `(${x} ${op} ${y})`),
      fc.tuple(fc.constantFrom('abs', 'ceiling', 'floor', 'sign', 'sqrt', 'square', 'exp'), tie('n')).map(([f, x]) => `${f}(${x})`)),
  })).n
  const typed = fc.oneof(
    fc.tuple(fc.constantFrom('starts_with', 'ends_with', 'contains', 'startswith'), strExpr, strExpr).map(([f, x, y]) => `${f}(${x}, ${y})`),
    fc.tuple(strExpr, fc.constantFrom('=', '!=', '<', '<=', '>', '>='), strExpr).map(([x, op, y]) => `(${x} ${op} ${y})`),
    fc.tuple(numExpr, fc.constantFrom('=', '!=', '<', '<=', '>', '>='), numExpr).map(([x, op, y]) => `(${x} ${op} ${y})`),
    numExpr, strExpr)

  const condition = fc.letrec<{ e: string }>((tie) => ({
    e: fc.oneof({ depthSize: 'small', withCrossShrink: true },
      literal, path, path, typed, typed,
      fc.tuple(tie('e'), fc.constantFrom(...OPS), tie('e')).map(([l, op, r]) => `(${l} ${op} ${r})`),
      tie("e").map((e) => `(NOT ${e})`),
      tie('e').map((e) => `-(${e})`),
      fc.tuple(fc.constantFrom(...FUNCTIONS), fc.array(tie('e'), { minLength: 3, maxLength: 3 })).map(([[f, n], args]) => `${f}(${args.slice(0, n).join(', ')})`),
      fc.tuple(tie('e'), fc.boolean(), fc.array(literal.filter((l) => l !== 'undefined'), { maxLength: 4 })).map(([e, neg, list]) => `(${e} ${neg ? "NIN" : "IN"} [${list.join(", ")}])`)),
  })).e

  it('agree on generated conditions × generated messages', () => {
    let evaluations = 0
    fc.assert(fc.property(fc.array(condition, { minLength: 1, maxLength: 25 }), fc.array(message, { minLength: 1, maxLength: 4 }), (conditions, messages) => {
      const set = new WasmRouteSet(conditions)
      for (const m of messages) { agree(set, m); evaluations += conditions.length }
    }), { numRuns: 1000 })
    expect(evaluations).toBeGreaterThan(10000)
    // the generators reach every kind of result, not just undefined
    for (const kind of ['true', 'false', 'null', 'undefined', 'number', 'string', 'object']) expect(seen.get(kind) ?? 0, kind).toBeGreaterThan(50)
    console.log('generated evaluations:', evaluations, Object.fromEntries(seen))
  })
})
