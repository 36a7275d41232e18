// rhea reports some peer mistakes with console.warn and console.error, and some of those print what
// the peer sent: a message section as JSON, which can be a token. While rhea reads a connection's
// bytes (synchronously), its console output goes to the hub's logger instead, cut to its wording,
// so nothing the peer sent reaches stderr and the log stays one JSON object a line.
import type { Logger } from '../log.js'

type ConsoleMethod = 'log' | 'info' | 'warn' | 'error' | 'trace' | 'debug'
const METHODS: ConsoleMethod[] = ['log', 'info', 'warn', 'error', 'trace', 'debug']

/**
 * The leading words of a diagnostic, up to the first character that could start data (a quote, a
 * bracket, a digit, `=`): `"WARNING: expected described message section got {…}"` →
 * `"WARNING: expected described message section got"`.
 */
export function diagnosticWording(first: unknown): string {
  const m = /^[A-Za-z][A-Za-z ,.:%_-]*/.exec(typeof first === 'string' ? first : '')
  return (m?.[0] ?? '').slice(0, 120).trim()
}

/** Runs `read` with console output routed to `log` as `amqp library diagnostic` records. */
export function withRheaConsoleCaptured(log: Logger, fields: Record<string, unknown>, read: () => void): void {
  const saved = METHODS.map((m) => console[m])
  const report = (first?: unknown) => { log.warn('amqp library diagnostic', { ...fields, text: diagnosticWording(first) }) }
  for (const m of METHODS) console[m] = report
  try {
    read()
  } finally {
    METHODS.forEach((m, i) => { console[m] = saved[i]! })
  }
}
