// The scan that picks a job's devices, run in the query worker: the device twins after a given id
// that the job's condition holds for, a page at a time. A page ends after `max` matches, or after
// `maxScanned` twins or `maxMs`, so one task holds the worker (and the queries behind it) briefly.
import type { Value } from '../query-common/values.js'
import { whereHolds } from './query-evaluator.js'
import { conditionOf } from './configuration-plan.js'

export interface JobTargetsRequest {
  /** a WHERE clause over device twins, or `*` */
  condition: string
  after?: string
  max: number
  maxScanned: number
  maxMs: number
}

export interface JobTargets {
  ids: string[]
  /** where the next page starts; undefined when the scan is done */
  resumeAfter?: string
}

export function pickJobTargets(request: JobTargetsRequest, twins: Iterable<{ key: string; twin: Record<string, unknown> }>): JobTargets {
  const where = conditionOf(request.condition)
  const deadline = performance.now() + request.maxMs
  const ids: string[] = []
  let scanned = 0
  for (const { key, twin } of twins) {
    if (whereHolds(where, twin as Value)) ids.push(key)
    scanned++
    const full = ids.length >= request.max || scanned >= request.maxScanned || ((scanned & 15) === 0 && performance.now() > deadline)
    if (full) return { ids, resumeAfter: key }
  }
  return { ids }
}
