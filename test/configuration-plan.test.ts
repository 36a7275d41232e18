// Issue 16: the configurations' scan in the query worker (configuration-plan.ts), on its own: the
// winner by rank, statuses compared whatever their order, pages of changes that resume where they
// stopped, and metrics counted on their own collection.
import { describe, expect, it } from 'vitest'
import { planConfigurations, type ConfigurationPlanRequest } from '../src/query/configuration-plan.js'

const twin = (deviceId: string, env: string, configurations?: Record<string, { status: 'Applied' | 'Targeted' }>) =>
  ({ key: deviceId, twin: { deviceId, tags: { env }, properties: { desired: {}, reported: { ok: env === 'test' } }, ...(configurations ? { configurations } : {}) } })

const request = (over: Partial<ConfigurationPlanRequest> = {}): ConfigurationPlanRequest => ({
  modules: false, maxChanges: 100, maxScanned: 100,
  configurations: [{ id: 'low', condition: "tags.env='test'", rank: 0 }, { id: 'high', condition: "tags.env='test' AND deviceId='b'", rank: 1 }],
  metrics: [{ configurationId: 'low', name: 'ok', query: 'SELECT deviceId FROM devices WHERE properties.reported.ok = true' },
    { configurationId: 'low', name: 'mods', query: 'SELECT deviceId FROM devices.modules WHERE moduleId = \'x\'' }],
  ...over,
})

describe('configuration plan', () => {
  it('picks the higher rank, marks the rest Targeted, counts targets, winners and metrics', () => {
    const plan = planConfigurations(request(), [twin('a', 'test'), twin('b', 'test'), twin('c', 'prod')])
    expect(plan.changes).toEqual([
      { key: 'a', statuses: { low: { status: 'Applied' } }, apply: 'low' },
      { key: 'b', statuses: { low: { status: 'Targeted' }, high: { status: 'Applied' } }, apply: 'high' },
    ])
    expect([plan.targeted, plan.applied, plan.metrics, plan.resumeAfter]).toEqual([{ low: 2, high: 1 }, { low: 1, high: 1 }, { 'low\nok': 2 }, undefined])
  })

  it('leaves twins already right alone, whatever order their statuses were written in; clears a twin no longer targeted', () => {
    const plan = planConfigurations(request(), [
      twin('a', 'test', { low: { status: 'Applied' } }),
      twin('b', 'test', { high: { status: 'Applied' }, low: { status: 'Targeted' } }),
      twin('c', 'prod', { low: { status: 'Applied' } }),
    ])
    expect(plan.changes).toEqual([{ key: 'c', statuses: {} }])
  })

  it('also stops after maxScanned twins, changed or not, so one page never holds the worker for the whole fleet', () => {
    const twins = ['a', 'b', 'c', 'd'].map((id) => twin(id, 'prod'))
    const first = planConfigurations(request({ maxScanned: 3 }), twins)
    expect([first.changes, first.resumeAfter]).toEqual([[], 'c'])
    const rest = planConfigurations(request({ maxScanned: 3, after: 'c' }), twins.slice(3))
    expect([rest.changes, rest.resumeAfter]).toEqual([[], undefined])
  })

  it('ends a page by time too: with a deadline already past, after the first 16 twins', () => {
    const twins = Array.from({ length: 40 }, (_, i) => twin(`t${String(i).padStart(2, '0')}`, 'prod'))
    const page = planConfigurations(request({ maxScanned: 1000, maxMs: -1 }), twins)
    expect(page.resumeAfter).toBe('t15')
  })

  it('stops after maxChanges and says where to resume', () => {
    const twins = ['a', 'b', 'c', 'd'].map((id) => twin(id, 'test'))
    const first = planConfigurations(request({ maxChanges: 2 }), twins)
    expect([first.changes.map((c) => c.key), first.resumeAfter]).toEqual([['a', 'b'], 'b'])
    const rest = planConfigurations(request({ maxChanges: 2, after: 'b' }), twins.slice(2))
    expect([rest.changes.map((c) => c.key), rest.resumeAfter]).toEqual([['c', 'd'], 'd'])
  })
})
