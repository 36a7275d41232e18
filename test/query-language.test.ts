// Conformance of the IoT Hub query language (query-language.md) over device twin documents:
// projections, WHERE (operators, functions, type and missing-property rules), COUNT and other
// aggregates, GROUP BY, TOP, paging with continuation tokens, and errors with positions.
import { describe, expect, it } from 'vitest'
import { QuerySyntaxError } from '../src/query-common/errors.js'
import { InvalidContinuationError, runQuery, runQueryAll } from '../src/query/query-evaluator.js'
import { parseQuery } from '../src/query/query-parser.js'

function twin(deviceId: string, status: string, tags: object, reported: object, extra: object = {}): object {
  return {
    deviceId, etag: 'AAAAAAAAAAE=', deviceEtag: 'NzQ3', version: 4, status, statusUpdateTime: '0001-01-01T00:00:00Z',
    connectionState: 'Disconnected', lastActivityTime: '2024-01-01T00:00:00Z', cloudToDeviceMessageCount: 0,
    authenticationType: 'sas', x509Thumbprint: { primaryThumbprint: null, secondaryThumbprint: null }, modelId: '',
    capabilities: { iotEdge: false }, tags,
    properties: {
      desired: { telemetryConfig: { sendFrequency: '5m' }, $metadata: { $lastUpdated: '2024-01-01T00:00:00Z' }, $version: 2 },
      reported: { ...reported, $metadata: { $lastUpdated: '2024-01-02T00:00:00Z' }, $version: 3 },
    },
    ...extra,
  }
}

const DEVICES = [
  twin('d1', 'enabled', { location: { region: 'US', plant: 'Redmond43' }, group: 'a', floor: 1 }, { connectivity: 'wired', telemetryConfig: { sendFrequencyInSecs: 60, status: 'Success' }, temp: 21.5 }),
  twin('d2', 'enabled', { location: { region: 'US', plant: 'Redmond44' }, group: 'b', floor: 2 }, { connectivity: 'wifi', telemetryConfig: { sendFrequencyInSecs: 30, status: 'Pending' }, temp: 19 }),
  twin('d3', 'disabled', { location: { region: 'EU', plant: 'Dublin1' }, group: 'a', floor: 3 }, { connectivity: 'cellular', telemetryConfig: { sendFrequencyInSecs: 120, status: 'Success' }, temp: null }),
  twin('d4', 'enabled', { location: { region: 'EU' } }, { telemetryConfig: { status: 'Success' }, temp: 25 }),
  twin('edge-5', 'enabled', { location: { region: 'US' }, group: 'b' }, { telemetryConfig: { status: 'Error' }, temp: 'hot' }, { capabilities: { iotEdge: true } }),
  twin('d6', 'disabled', {}, {}),
]
const ids = (items: object[]) => items.map((i) => (i as { deviceId: string }).deviceId)

describe('query language: WHERE over device twins', () => {
  const cases: Array<[string, string[]]> = [
    ['SELECT * FROM devices', ['d1', 'd2', 'd3', 'd4', 'edge-5', 'd6']],
    ["SELECT * FROM devices WHERE tags.location.region = 'US'", ['d1', 'd2', 'edge-5']],
    ["select * from DEVICES where tags.location.region = 'US' and properties.reported.telemetryConfig.sendFrequencyInSecs >= 60", ['d1']],
    ["SELECT * FROM devices WHERE tags.location.region = 'US' OR status = 'disabled'", ['d1', 'd2', 'd3', 'edge-5', 'd6']],
    ["SELECT * FROM devices WHERE NOT (status = 'enabled')", ['d3', 'd6']],
    ["SELECT * FROM devices WHERE status != 'enabled'", ['d3', 'd6']],
    ["SELECT * FROM devices WHERE status <> 'enabled'", ['d3', 'd6']],
    ["SELECT * FROM devices WHERE properties.reported.connectivity IN ['wired', 'wifi']", ['d1', 'd2']],
    ["SELECT * FROM devices WHERE properties.reported.connectivity NIN ['wired', 'wifi']", ['d3']],
    ['SELECT * FROM devices WHERE is_defined(properties.reported.connectivity)', ['d1', 'd2', 'd3']],
    ['SELECT * FROM devices WHERE NOT is_defined(properties.reported.connectivity)', ['d4', 'edge-5', 'd6']],
    ['SELECT * FROM devices WHERE IS_DEFINED(properties.reported.temp)', ['d1', 'd2', 'd3', 'd4', 'edge-5']],
    ['SELECT * FROM devices WHERE is_null(properties.reported.temp)', ['d3']],
    ['SELECT * FROM devices WHERE is_number(properties.reported.temp)', ['d1', 'd2', 'd4']],
    ['SELECT * FROM devices WHERE is_string(properties.reported.temp)', ['edge-5']],
    ['SELECT * FROM devices WHERE is_object(tags.location)', ['d1', 'd2', 'd3', 'd4', 'edge-5']],
    ['SELECT * FROM devices WHERE is_bool(capabilities.iotEdge) AND capabilities.iotEdge = true', ['edge-5']],
    ['SELECT * FROM devices WHERE capabilities.iotEdge', ['edge-5']],
    ['SELECT * FROM devices WHERE properties.reported.temp > 20', ['d1', 'd4']],
    ['SELECT * FROM devices WHERE properties.reported.temp < 20', ['d2']],
    ['SELECT * FROM devices WHERE properties.reported.temp * 2 >= 50', ['d4']],
    ['SELECT * FROM devices WHERE properties.reported.temp - 1 = 18', ['d2']],
    ['SELECT * FROM devices WHERE properties.reported.temp % 2 = 1', ['d2', 'd4']],
    ["SELECT * FROM devices WHERE properties.reported.temp = 'hot'", ['edge-5']],
    ["SELECT * FROM devices WHERE properties.reported.temp > 'a'", ['edge-5']],
    ["SELECT * FROM devices WHERE STARTSWITH(deviceId, 'edge')", ['edge-5']],
    ["SELECT * FROM devices WHERE starts_with(deviceId, 'edge')", ['edge-5']],
    ["SELECT * FROM devices WHERE ENDSWITH(tags.location.plant, '43')", ['d1']],
    ["SELECT * FROM devices WHERE CONTAINS(tags.location.plant, 'mond')", ['d1', 'd2']],
    ["SELECT * FROM devices WHERE lower(tags.location.region) = 'eu'", ['d3', 'd4']],
    ['SELECT * FROM devices WHERE length(deviceId) > 2', ['edge-5']],
    ["SELECT * FROM devices WHERE DeviceId = 'd2'", ['d2']],
    ["SELECT * FROM devices WHERE deviceId IN ['d1', 'd3', 'zz']", ['d1', 'd3']],
    ['SELECT * FROM devices WHERE tags.floor IN [1, 3]', ['d1', 'd3']],
    ["SELECT * FROM devices WHERE tags.[[group]] = 'a'", ['d1', 'd3']],
    ['SELECT * FROM devices WHERE properties.desired.$version = 2 AND properties.reported.$version = 3 AND deviceId = \'d1\'', ['d1']],
    ["SELECT * FROM devices WHERE properties.reported.$metadata.$lastUpdated > '2024-01-01'", ['d1', 'd2', 'd3', 'd4', 'edge-5', 'd6']],
    ['SELECT * FROM devices WHERE tags.missing = 1', []],
    ['SELECT * FROM devices WHERE tags.missing != 1', []],
    ["SELECT * FROM devices WHERE tags.floor = '1'", []],
    ["SELECT * FROM devices WHERE tags.location = tags.location", []],
    ["SELECT * FROM devices WHERE 'yes'", []],
    ['SELECT * FROM devices WHERE 1', []],
    ['SELECT * FROM devices WHERE true', ['d1', 'd2', 'd3', 'd4', 'edge-5', 'd6']],
    ['SELECT * FROM devices WHERE tags.missing = 1 OR true', ['d1', 'd2', 'd3', 'd4', 'edge-5', 'd6']],
    ['SELECT * FROM devices WHERE version = 0x4', ['d1', 'd2', 'd3', 'd4', 'edge-5', 'd6']],
    ["SELECT * FROM devices WHERE array_contains(['d1', 'd6'], deviceId)", ['d1', 'd6']],
    ["SELECT * FROM devices WHERE as_number(properties.desired.telemetryConfig.sendFrequency) > 0", []],
    ["SELECT * FROM devices WHERE \"d1\" = deviceId", ['d1']],
    ['SELECT * FROM devices WHERE abs(tags.floor - 2) = 1', ['d1', 'd3']],
  ]
  it.each(cases)('%s', (query, expected) => {
    expect(ids(runQueryAll(query, DEVICES))).toEqual(expected)
  })
  it('returns the twin documents themselves, item type twin', () => {
    const page = runQuery("SELECT * FROM devices WHERE deviceId = 'd1'", DEVICES)
    expect(page.items).toEqual([DEVICES[0]])
    expect(page.itemType).toBe('twin')
    expect(page.continuation).toBeUndefined()
  })
})

describe('query language: projections, aggregates, GROUP BY', () => {
  const cases: Array<[string, object[]]> = [
    ["SELECT deviceId, status FROM devices WHERE tags.floor = 1", [{ deviceId: 'd1', status: 'enabled' }]],
    ["SELECT DeviceId, LastActivityTime FROM devices WHERE deviceId = 'd2'", [{ deviceId: 'd2', lastActivityTime: '2024-01-01T00:00:00Z' }]],
    ["SELECT deviceId AS id, tags.location.region AS region FROM devices WHERE tags.floor >= 2", [{ id: 'd2', region: 'US' }, { id: 'd3', region: 'EU' }]],
    ["SELECT properties.reported.connectivity FROM devices WHERE deviceId IN ['d1', 'd4']", [{ connectivity: 'wired' }, {}]],
    ["SELECT tags.location FROM devices WHERE deviceId = 'd4'", [{ location: { region: 'EU' } }]],
    ["SELECT tags.[[group]] AS g FROM devices WHERE deviceId = 'd2'", [{ g: 'b' }]],
    ['SELECT COUNT() FROM devices', [{ $1: 6 }]],
    ['SELECT COUNT() AS total FROM devices', [{ total: 6 }]],
    ['SELECT COUNT(*) AS total FROM devices', [{ total: 6 }]],
    ["SELECT COUNT() AS total FROM devices WHERE status = 'enabled'", [{ total: 4 }]],
    ["SELECT COUNT() AS total FROM devices WHERE status = 'nope'", [{ total: 0 }]],
    ['SELECT SUM(tags.floor) AS s, AVG(tags.floor) AS a, MIN(tags.floor) AS lo, MAX(tags.floor) AS hi FROM devices', [{ s: 6, a: 2, lo: 1, hi: 3 }]],
    ["SELECT SUM(tags.floor) AS s, AVG(tags.floor) AS a FROM devices WHERE status = 'nope'", [{ s: 0 }]],
    ['SELECT COUNT() AS n, MAX(properties.reported.temp) FROM devices', [{ n: 6, $1: 25 }]],
    ['SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS numberOfDevices FROM devices GROUP BY properties.reported.telemetryConfig.status',
      [{ status: 'Success', numberOfDevices: 3 }, { status: 'Pending', numberOfDevices: 1 }, { status: 'Error', numberOfDevices: 1 }, { numberOfDevices: 1 }]],
    ['SELECT tags.location.region, COUNT() AS n FROM devices WHERE is_defined(tags.location.region) GROUP BY tags.location.region', [{ region: 'US', n: 3 }, { region: 'EU', n: 2 }]],
    ['SELECT status, tags.location.region AS r, COUNT() AS n FROM devices GROUP BY status, tags.location.region',
      [{ status: 'enabled', r: 'US', n: 3 }, { status: 'disabled', r: 'EU', n: 1 }, { status: 'enabled', r: 'EU', n: 1 }, { status: 'disabled', n: 1 }]],
    ['SELECT COUNT() AS n FROM devices GROUP BY status', [{ n: 4 }, { n: 2 }]],
    ['SELECT TOP 2 deviceId FROM devices', [{ deviceId: 'd1' }, { deviceId: 'd2' }]],
    ['SELECT TOP 0 * FROM devices', []],
    ['SELECT TOP 1 status, COUNT() AS n FROM devices GROUP BY status', [{ status: 'enabled', n: 4 }]],
  ]
  it.each(cases)('%s', (query, expected) => {
    expect(runQueryAll(query, DEVICES)).toEqual(expected)
    expect(runQuery(query, DEVICES).itemType).toBe(query.includes('*') && !query.includes('COUNT') ? 'twin' : 'raw')
  })
})

describe('query language: other collections', () => {
  const modules = [{ deviceId: 'd1', moduleId: 'm1', properties: { reported: { status: 'scanning' } } }, { deviceId: 'd3', moduleId: 'm2', properties: { reported: { status: 'scanning' } } }]
  const jobs = [{ deviceId: 'd1', jobId: 'j1', status: 'completed' }, { deviceId: 'd2', jobId: 'j2', status: 'running' }]
  it('devices.modules', () => {
    const items = runQueryAll("SELECT * FROM devices.modules WHERE properties.reported.status = 'scanning' AND deviceId IN ['d1', 'd2']", modules)
    expect(items).toEqual([modules[0]])
  })
  it('devices.jobs with devices.jobs.<field> paths', () => {
    const page = runQuery("SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'j2'", jobs)
    expect(page.items).toEqual([jobs[1]])
    expect(page.itemType).toBe('deviceJob')
  })
})

describe('query language: paging', () => {
  const many = Array.from({ length: 25 }, (_, i) => ({ deviceId: `dev-${String(i).padStart(2, '0')}`, status: i % 2 ? 'enabled' : 'disabled', tags: { n: i } }))
  it('pages through results with opaque continuation tokens', () => {
    const q = "SELECT * FROM devices WHERE status = 'enabled'"
    const p1 = runQuery(q, many, { pageSize: 5 })
    expect(ids(p1.items)).toEqual(['dev-01', 'dev-03', 'dev-05', 'dev-07', 'dev-09'])
    expect(typeof p1.continuation).toBe('string')
    const p2 = runQuery(q, many, { pageSize: 5, continuation: p1.continuation })
    expect(ids(p2.items)).toEqual(['dev-11', 'dev-13', 'dev-15', 'dev-17', 'dev-19'])
    const p3 = runQuery(q, many, { pageSize: 5, continuation: p2.continuation })
    expect(ids(p3.items)).toEqual(['dev-21', 'dev-23'])
    expect(p3.continuation).toBeUndefined()
  })
  it('an exactly full last page has no continuation', () => {
    const p = runQuery("SELECT * FROM devices WHERE tags.n < 10", many, { pageSize: 10 })
    expect(p.items).toHaveLength(10)
    expect(p.continuation).toBeUndefined()
  })
  it('the default page size is 100', () => {
    const lots = Array.from({ length: 150 }, (_, i) => ({ deviceId: `x${i}` }))
    const p = runQuery('SELECT * FROM devices', lots)
    expect(p.items).toHaveLength(100)
    expect(runQuery('SELECT * FROM devices', lots, { continuation: p.continuation }).items).toHaveLength(50)
  })
  it('TOP caps the result across pages', () => {
    const q = 'SELECT TOP 7 deviceId FROM devices'
    const p1 = runQuery(q, many, { pageSize: 5 })
    const p2 = runQuery(q, many, { pageSize: 5, continuation: p1.continuation })
    expect(p1.items).toHaveLength(5)
    expect(p2.items).toEqual([{ deviceId: 'dev-05' }, { deviceId: 'dev-06' }])
    expect(p2.continuation).toBeUndefined()
  })
  it('pages GROUP BY results', () => {
    const q = 'SELECT tags.n AS n, COUNT() AS c FROM devices GROUP BY tags.n'
    expect(runQueryAll(q, many, 4)).toHaveLength(25)
    expect(runQuery(q, many, { pageSize: 4 }).items).toEqual([{ n: 0, c: 1 }, { n: 1, c: 1 }, { n: 2, c: 1 }, { n: 3, c: 1 }])
  })
  it('rejects a continuation token of another query or a forged one', () => {
    const p1 = runQuery('SELECT * FROM devices', many, { pageSize: 5 })
    expect(() => runQuery("SELECT * FROM devices WHERE status = 'enabled'", many, { continuation: p1.continuation })).toThrow(InvalidContinuationError)
    expect(() => runQuery('SELECT * FROM devices', many, { continuation: 'garbage!' })).toThrow(InvalidContinuationError)
    expect(() => runQuery('SELECT * FROM devices', many, { pageSize: 0 })).toThrow(RangeError)
  })
})

describe('query language: errors carry their position', () => {
  const cases: Array<[string, number, number, string]> = [
    ['SELEKT * FROM devices', 1, 1, 'expected SELECT'],
    ['SELECT FROM devices', 1, 8, 'expected a property path or an aggregate'],
    ['SELECT * devices', 1, 10, 'expected FROM'],
    ['SELECT * FROM things', 1, 15, 'expected devices'],
    ['SELECT * FROM devices.twins', 1, 23, "unknown collection 'devices.twins'"],
    ["SELECT * FROM devices WHERE status = 'x' extra", 1, 42, "unexpected 'extra'"],
    ['SELECT * FROM devices WHERE', 1, 28, 'end of input'],
    ["SELECT * FROM devices WHERE tags.x = 'a", 1, 38, 'unterminated string'],
    ['SELECT * FROM devices\nWHERE status ==', 2, 15, 'expected an expression'],
    ['SELECT * FROM devices WHERE tags.group = 1 GROUP status', 1, 50, 'expected BY'],
    ['SELECT deviceId, COUNT() FROM devices', 1, 8, 'GROUP BY or be aggregated'],
    ['SELECT deviceId, COUNT() AS n FROM devices GROUP BY status', 1, 8, 'GROUP BY or be aggregated'],
    ['SELECT * FROM devices GROUP BY status', 1, 1, 'SELECT * cannot be used with GROUP BY'],
    ['SELECT COUNT() FROM devices.modules GROUP BY status', 1, 37, 'GROUP BY is supported only on devices'],
    ['SELECT deviceId FROM devices.jobs', 1, 1, 'only SELECT *'],
    ['SELECT * FROM devices WHERE nosuch(1)', 1, 29, "unknown function 'nosuch'"],
    ['SELECT * FROM devices WHERE IS_DEFINED()', 1, 29, 'IS_DEFINED takes 1 argument, got 0'],
    ['SELECT * FROM devices ORDER BY deviceId', 1, 23, 'ORDER BY is not supported'],
    ['SELECT TOP x * FROM devices', 1, 12, 'TOP needs a non-negative integer'],
    ['SELECT deviceId AS FROM devices', 1, 20, 'expected an alias'],
    ['SELECT * FROM devices WHERE group = 1', 1, 29, "unexpected keyword 'group'"],
    ['SELECT * FROM devices WHERE deviceId IN (1, 2)', 1, 41, "expected '['"],
    ['SELECT * FROM devices WHERE tags.[[x', 1, 34, "missing ']]'"],
    ['SELECT * FROM devices WHERE x = @', 1, 33, "unexpected character '@'"],
    [`SELECT * FROM devices WHERE deviceId = '${'x'.repeat(8200)}'`, 1, 8193, 'longer than 8192'],
  ]
  it.each(cases)('%s', (query, line, column, fragment) => {
    let error: unknown
    try { parseQuery(query) } catch (e) { error = e }
    expect(error).toBeInstanceOf(QuerySyntaxError)
    const e = error as QuerySyntaxError
    expect(e.message).toContain(fragment)
    expect({ line: e.line, column: e.column }).toEqual({ line, column })
    expect(() => runQuery(query, DEVICES)).toThrow(QuerySyntaxError)
  })
})
