// The shard's route evaluation on its own: which endpoints a message reaches (once each), the
// fallback, enrichments, and the system properties and body routes can read — checked against the
// JS reference interpreter on the same messages.
import { describe, expect, it } from 'vitest'
import { MessageRouter, type RouteTwin } from '../shards/message-router.js'
import { validateRoutingConfig } from '../src/routing/routing-config.js'
import { conditionMatches } from '../src/routing/condition-interpreter.js'
import { compileCondition } from '../src/routing/condition-compiler.js'
import { storageFileName } from '../shards/storage-endpoint.js'

const sender = { deviceId: 'd1', generationId: 'g1', authMethod: 'sas' }
const twins: Record<string, RouteTwin> = { d1: { tags: { site: 'lab', n: 3 }, properties: { desired: {}, reported: { fw: '1.2' } } } }

function router(raw: unknown): MessageRouter {
  return new MessageRouter(validateRoutingConfig(raw), 'myhub', (id) => twins[id])
}
const names = (r: MessageRouter, bag: string, body = '', t = Date.parse('2026-01-02T03:04:05Z')) =>
  r.route('DeviceMessages', t, sender, bag, null, Buffer.from(body)).map((d) => d.endpoint)

describe('MessageRouter', () => {
  const endpoints = { logs: [{ name: 'A' }, { name: 'b' }] }

  it('delivers to each matching endpoint once and takes unmatched messages to the fallback', () => {
    const r = router({
      endpoints,
      routes: [
        { name: 'r1', condition: "level = 'hot'", endpointNames: ['A'] },
        { name: 'r2', condition: "$connectionDeviceId = 'd1' AND level = 'hot'", endpointNames: ['A', 'b'] },
        { name: 'r3', condition: "$enqueuedTime > '2026-01-01'", endpointNames: ['b'] },
        { name: 'off', condition: 'true', endpointNames: ['events'], isEnabled: false },
      ],
    })
    expect(r.telemetryRouted).toBe(true)
    expect(names(r, 'level=hot')).toEqual(['a', 'b'])
    expect(names(r, 'level=cold', '', Date.parse('2025-06-01T00:00:00Z'))).toEqual(['events'])
    expect(names(r, 'level=cold')).toEqual(['b'])
  })

  it('drops unmatched messages when the fallback is off; event sources have no fallback', () => {
    const r = router({ endpoints, routes: [{ name: 'r', condition: "level = 'x'", endpointNames: ['A'] }], fallbackRoute: { isEnabled: false } })
    expect(names(r, 'level=y')).toEqual([])
    const e = router({ endpoints, routes: [{ name: 'r', source: 'TwinChangeEvents', condition: "opType = 'nope'", endpointNames: ['A'] }] })
    expect(e.telemetryRouted).toBe(false)
    expect(e.wants('TwinChangeEvents')).toBe(true)
    expect(e.route('TwinChangeEvents', Date.now(), sender, '', { opType: 'updateTwin' }, Buffer.from('{}'))).toEqual([])
  })

  it('reads JSON bodies (UTF-8 and UTF-16), twins and system properties as the reference interpreter does', () => {
    const conditions = ['$body.temp > 30', "$twin.tags.site = 'lab' AND $twin.properties.reported.fw = '1.2'", "$contentType = 'application/json'", 'is_defined($body.temp)']
    const r = router({ endpoints: { logs: conditions.map((_, i) => ({ name: `l${i}` })) }, routes: conditions.map((condition, i) => ({ name: `r${i}`, condition, endpointNames: [`l${i}`] })) })
    const cases: [string, Buffer][] = [
      ['$.ct=application%2Fjson&$.ce=utf-8', Buffer.from('{"temp":35}')],
      ['$.ct=application%2Fjson&$.ce=utf-16', Buffer.from('{"temp":35}', 'utf16le')],
      ['$.ct=application%2Fjson', Buffer.from('{"temp":35}')],
      ['$.ct=text%2Fplain&$.ce=utf-8', Buffer.from('{"temp":35}')],
      ['$.ct=application%2Fjson&$.ce=utf-8', Buffer.from('not json')],
    ]
    for (const [bag, body] of cases) {
      const got = r.route('DeviceMessages', Date.now(), sender, bag, null, body).map((d) => d.endpoint)
      const system = Object.fromEntries(new URLSearchParams(bag).entries())
      const expected = conditions.flatMap((c, i) => conditionMatches(compileCondition(c), {
        systemProperties: { contentType: system['$.ct'], contentEncoding: system['$.ce'], connectionDeviceId: 'd1' }, body, twin: twins.d1,
      }) ? [`l${i}`] : [])
      expect(got, bag).toEqual(expected.length ? expected : ['events'])
    }
  })

  it("stamps enrichments per endpoint with Azure's rule for missing twin paths", () => {
    const r = router({
      endpoints,
      routes: [{ name: 'r', condition: 'true', endpointNames: ['A', 'events'] }],
      enrichments: [
        { key: 'site', value: '$twin.tags.site', endpointNames: ['A'] },
        { key: 'n', value: '$twin.tags.n', endpointNames: ['A'] },
        { key: 'gone', value: '$twin.tags.nothing.here', endpointNames: ['A'] },
        { key: 'hub', value: '$iothubname', endpointNames: ['A', 'events'] },
        { key: 'static', value: 'v', endpointNames: ['events'] },
      ],
    })
    const out = r.route('DeviceMessages', Date.now(), sender, '', null, Buffer.alloc(0))
    expect(out).toEqual([
      { endpoint: 'a', enrichments: { site: 'lab', n: '3', gone: '$twin.tags.nothing.here', hub: 'myhub' } },
      { endpoint: 'events', enrichments: { hub: 'myhub', static: 'v' } },
    ])
  })

  it("names storage files with Azure's tokens in UTC", () => {
    expect(storageFileName('{iothub}/{partition}/{YYYY}/{MM}/{DD}/{HH}/{mm}', 'hub', 3, Date.parse('2026-02-03T04:05:59Z'))).toBe('hub/3/2026/02/03/04/05')
    expect(storageFileName('x-{YYYY}{MM}{DD}-{HH}{mm}-{partition}-{iothub}.json', 'h', 0, Date.parse('2026-12-31T23:59:00Z'))).toBe('x-20261231-2359-0-h.json')
  })
})
