// The expression language's string functions build at most STRING_BUDGET code units per evaluation:
// nested CONCATs over a 256 KB body made one route test copy gigabytes (a 3.6 s stall, then a 500 for
// "Invalid string length"). And a condition of thousands of ORs is a compilation error, not a stack overflow.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { STRING_BUDGET } from '../src/query-common/functions.js'
import { runQueryAll } from '../src/query/query-evaluator.js'
import { compileCondition } from '../src/routing/condition-compiler.js'
import { conditionMatches, evaluateCondition } from '../src/routing/condition-interpreter.js'
import { prepareMessage } from '../src/routing/route-message.js'
import { startTestHub, type TestHub } from './helpers/test-hub.js'

const JSON_MESSAGE = { contentType: 'application/json', contentEncoding: 'utf-8' }
const bodyMessage = (s: string) => prepareMessage({ body: JSON.stringify({ s }), appProperties: {}, systemProperties: JSON_MESSAGE })
/** CONCAT of `n` copies of `inner`. */
const concatOf = (inner: string, n: number) => `CONCAT(${Array.from({ length: n }, () => inner).join(', ')})`

describe('the string budget', () => {
  it('CONCAT, LOWER and UPPER give their result within the budget and undefined past it', () => {
    const quarter = 'x'.repeat(STRING_BUDGET / 4)
    const m = bodyMessage(quarter)
    expect(evaluateCondition(compileCondition(`LENGTH(${concatOf('$body.s', 4)})`), m)).toBe(STRING_BUDGET)
    expect(evaluateCondition(compileCondition(`LENGTH(${concatOf('$body.s', 5)})`), m)).toBeUndefined()
    // the budget is for the whole evaluation, not each call
    expect(evaluateCondition(compileCondition(`LENGTH(CONCAT(${concatOf('$body.s', 3)}, ${concatOf('$body.s', 2)}))`), m)).toBeUndefined()
    expect(evaluateCondition(compileCondition('LENGTH(UPPER($body.s))'), m)).toBe(STRING_BUDGET / 4)
    expect(evaluateCondition(compileCondition(`LENGTH(UPPER(${concatOf('$body.s', 2)}))`), m)).toBeUndefined()
    // and each evaluation starts with all of it
    expect(evaluateCondition(compileCondition(`LENGTH(${concatOf('$body.s', 4)})`), m)).toBe(STRING_BUDGET)
    expect(conditionMatches(compileCondition("CONCAT('a', 'b') = 'ab'"), m)).toBe(true)
  })

  it('holds for queries over twins, one document at a time', () => {
    const quarter = 'y'.repeat(STRING_BUDGET / 4)
    const twins = [{ deviceId: 'a', tags: { s: quarter } }, { deviceId: 'b', tags: { s: quarter } }]
    expect(runQueryAll(`SELECT * FROM devices WHERE LENGTH(${concatOf('tags.s', 4)}) = ${STRING_BUDGET}`, twins).length).toBe(2)
    expect(runQueryAll(`SELECT * FROM devices WHERE LENGTH(${concatOf('tags.s', 5)}) > 0`, twins).length).toBe(0)
  })
})

describe('the route test API with hostile conditions', () => {
  let t: TestHub
  beforeAll(async () => { t = await startTestHub() })
  afterAll(async () => { await t.stop() })
  const testNew = (condition: string, body: string) => t.rest('POST', '/routing/routes/$testnew', {
    body: { message: { body, appProperties: {}, systemProperties: JSON_MESSAGE }, route: { name: 'probe', source: 'DeviceMessages', condition, endpointNames: ['events'], isEnabled: true } },
  })

  it('answers nested CONCATs over a 400 KB body (undefined, the budget ran out) and then serves the next request', async () => {
    const l2 = concatOf(concatOf('$body.s', 64), 16)
    const r = await testNew(`LENGTH(CONCAT(${l2}, ${l2})) > 0`, JSON.stringify({ s: 'x'.repeat(400_000) }))
    expect([r.status, r.body]).toEqual([200, { result: 'undefined', details: { compilationErrors: [] } }])
    expect((await t.rest('GET', '/health', { token: null })).status).toBe(200)
  })

  it('names a condition of thousands of ORs as a compilation error', async () => {
    const cond = Array.from({ length: 8000 }, (_, i) => `a = '${i}'`).join(' OR ')
    const r = await testNew(cond, '{}')
    expect(r.status).toBe(200)
    expect(r.body.result).toBe('undefined')
    expect(r.body.details.compilationErrors).toEqual([{ message: 'Syntax error at line 1, column 1: the condition has too many terms to compile; split it into several routes', severity: 'error', location: { start: { line: 1, column: 1 }, end: { line: 1, column: 1 } } }])
    // and saving it as a route is refused in Azure's form
    const put = await t.rest('PUT', '/routing/routes/long', { body: { name: 'long', source: 'DeviceMessages', condition: cond, endpointNames: ['events'], isEnabled: true } })
    expect([put.status, put.body.Message]).toEqual([400, expect.stringContaining('too many terms to compile')])
  })
})
