// Event Hubs start positions, as the client sends them in the `apache.org:selector-filter:string`
// filter: `amqp.annotation.x-opt-offset > '-1'`, `... > '@latest'`, `... >= '<offset>'`,
// `amqp.annotation.x-opt-sequence-number > '<n>'`, `amqp.annotation.x-opt-enqueued-time > '<ms>'`.
export type StartPosition =
  | { kind: 'earliest' }
  | { kind: 'latest' }
  | { kind: 'offset'; offset: number; inclusive: boolean }
  | { kind: 'sequence'; sequence: number; inclusive: boolean }
  | { kind: 'enqueued-time'; ms: number; inclusive: boolean }

export class FilterError extends Error {}

const EXPR = /^\s*amqp\.annotation\.x-opt-(offset|sequence-number|enqueued-time)\s*(>=|>)\s*'([^']*)'\s*$/i

export function parsePositionFilter(expr: string | undefined): StartPosition {
  if (expr === undefined) return { kind: 'earliest' }
  const m = EXPR.exec(expr)
  if (!m) throw new FilterError(`unsupported filter ${JSON.stringify(expr)}`)
  const [, field, op, value] = m as unknown as [string, string, string, string]
  const inclusive = op === '>='
  const n = Number(value)
  switch (field.toLowerCase()) {
    case 'offset':
      if (value === '-1') return { kind: 'earliest' }
      if (value === '@latest') return { kind: 'latest' }
      if (!/^\d+$/.test(value)) throw new FilterError(`bad offset ${value}`)
      return { kind: 'offset', offset: n, inclusive }
    case 'sequence-number':
      if (!/^-?\d+$/.test(value)) throw new FilterError(`bad sequence number ${value}`)
      return { kind: 'sequence', sequence: n, inclusive }
    default:
      if (!/^\d+$/.test(value)) throw new FilterError(`bad enqueued time ${value}`)
      return { kind: 'enqueued-time', ms: n, inclusive }
  }
}
