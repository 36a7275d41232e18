// Conformance of route conditions (routing.md "Routing query language") on the JS reference:
// every operator, function, type rule, missing-property rule, body/twin access and syntax error.
import { describe, expect, it } from 'vitest'
import { QuerySyntaxError } from '../src/query-common/errors.js'
import { readConstants } from '../src/routing/bytecode.js'
import { compileCondition } from '../src/routing/condition-compiler.js'
import { conditionMatches, evaluateCondition } from '../src/routing/condition-interpreter.js'
import { parseCondition } from '../src/routing/condition-parser.js'
import { exprToString } from '../src/query-common/ast.js'
import { prepareMessage, type RouteMessage } from '../src/routing/route-message.js'
import { MESSAGE, ROUTE_CASES, ROUTE_SYNTAX_ERRORS, type Expected } from './routing-conformance-cases.js'

const prepared = prepareMessage(MESSAGE)

export function shape(v: unknown): Expected {
  if (Array.isArray(v)) return 'array'
  if (v !== null && typeof v === 'object') return 'object'
  return v as Expected
}

describe('route conditions: conformance table (JS reference)', () => {
  it('has enough cases', () => expect(ROUTE_CASES.length + ROUTE_SYNTAX_ERRORS.length).toBeGreaterThanOrEqual(240))
  it.each(ROUTE_CASES)('%s → %j', (condition, expected) => {
    const v = evaluateCondition(compileCondition(condition), prepared)
    expect(shape(v)).toStrictEqual(expected)
    expect(conditionMatches(compileCondition(condition), prepared)).toBe(expected === true)
  })
})

describe('route conditions: syntax errors carry their position', () => {
  it.each(ROUTE_SYNTAX_ERRORS)('%j → line %i, column %i', (condition, line, column, fragment) => {
    let error: unknown
    try { compileCondition(condition) } catch (e) { error = e }
    expect(error).toBeInstanceOf(QuerySyntaxError)
    const e = error as QuerySyntaxError
    expect({ line: e.line, column: e.column }).toEqual({ line, column })
    expect(e.message).toContain(fragment)
    expect(e.message).toMatch(/^Syntax error at line \d+, column \d+: /)
  })
})

const json = (extra: Partial<RouteMessage>, sys: Record<string, string>): RouteMessage => ({ systemProperties: sys, ...extra })
const body = Buffer.from('{"a":{"b":5}}')
const utf16 = Buffer.from('{"a":{"b":5}}', 'utf16le')
const utf32 = Buffer.alloc(13 * 4)
for (let i = 0; i < 13; i++) utf32.writeUInt32LE('{"a":{"b":5}}'.charCodeAt(i), i * 4)

describe('route conditions: when the body can be queried', () => {
  const cases: Array<[string, RouteMessage, boolean]> = [
    ['application/json + utf-8', json({ body }, { contentType: 'application/json', contentEncoding: 'utf-8' }), true],
    ['case-insensitive type and encoding', json({ body }, { contentType: 'Application/JSON', contentEncoding: 'UTF-8' }), true],
    ['charset parameter stands in for the encoding', json({ body }, { 'content-type': 'application/json;charset=utf-8' }), true],
    ['type with parameters plus encoding', json({ body }, { contentType: 'application/json; charset=utf-8', contentEncoding: 'utf-8' }), true],
    ['utf-16 body', json({ body: utf16 }, { contentType: 'application/json', contentEncoding: 'utf-16' }), true],
    ['utf-32 body', json({ body: utf32 }, { contentType: 'application/json', contentEncoding: 'UTF-32' }), true],
    ['no content type', json({ body }, { contentEncoding: 'utf-8' }), false],
    ['no content encoding', json({ body }, { contentType: 'application/json' }), false],
    ['text/plain', json({ body }, { contentType: 'text/plain', contentEncoding: 'utf-8' }), false],
    ['encoding latin1', json({ body }, { contentType: 'application/json', contentEncoding: 'latin1' }), false],
    ['not JSON', json({ body: Buffer.from('{"a":') }, { contentType: 'application/json', contentEncoding: 'utf-8' }), false],
    ['body as a string', json({ body: '{"a":{"b":5}}' }, { contentType: 'application/json', contentEncoding: 'utf-8' }), true],
    ['no body', json({}, { contentType: 'application/json', contentEncoding: 'utf-8' }), false],
  ]
  it.each(cases)('%s', (_name, message, queryable) => {
    const program = compileCondition('$body.a.b = 5')
    expect(evaluateCondition(program, prepareMessage(message))).toBe(queryable ? true : undefined)
  })
})

describe('route conditions: parsing and compiling', () => {
  it('parses with the documented precedence', () => {
    expect(exprToString(parseCondition('NOT a = 1 OR b AND c < 2 + 3 * -d'))).toBe(
      '((NOT (a = 1)) OR (b AND (c < (2 + (3 * (-d))))))')
    expect(exprToString(parseCondition("$body.x[2].y IN ['a', -1, null]"))).toBe('($body.x[2].y IN ["a", -1, null])')
    expect(exprToString(parseCondition('$Twin.tags.[[group]]'))).toBe('$twin.tags.group')
  })
  it('resolves names: system keywords, wire names and app fallback', () => {
    const e = parseCondition('$iothub-connection-device-id')
    expect(e).toMatchObject({ kind: 'path', root: 'sys', name: 'iothub-connection-device-id' })
    expect(evaluateCondition(compileCondition('$iothub-connection-device-id'), prepared)).toBe('thermostat-1')
  })
  it('keeps one copy of each constant', () => {
    const p = compileCondition("a = 'x' OR b = 'x' OR c = 'x'")
    expect(readConstants(p.bytes)).toEqual(['a', 'x', 'b', 'c'])
  })
  it('application property names are case-insensitive; the last of a case-duplicate wins', () => {
    const m = prepareMessage({ appProperties: { Alert: '1', ALERT: '2' } })
    expect(evaluateCondition(compileCondition('alert'), m)).toBe('2')
  })
  it('rejects expressions nested too deeply, with a position', () => {
    expect(() => compileCondition('('.repeat(200) + '1' + ')'.repeat(200))).toThrow(/nested too deeply/)
    expect(() => compileCondition('NOT '.repeat(300) + 'true')).toThrow(QuerySyntaxError)
  })
  it('a route matches only on exactly true', () => {
    for (const c of ["'true'", '1', 'null', 'missing', '$body.Weather']) expect(conditionMatches(compileCondition(c), prepared)).toBe(false)
    expect(conditionMatches(compileCondition('true'), MESSAGE)).toBe(true)
  })
  it('a twin-less message reads $twin as undefined', () => {
    expect(evaluateCondition(compileCondition('is_defined($twin.tags.x)'), prepareMessage({}))).toBe(false)
  })
})
