// What the command line prints: tables for people, JSON for scripts, and one line per error.

/** An error a person can act on: printed as one line, exit code `exitCode` (2: the command was wrong; 1: the hub refused or failed). */
export class CliError extends Error {
  constructor(message: string, readonly exitCode = 2) {
    super(message)
  }
}

export interface Column<T> {
  header: string
  value(row: T): unknown
}

function cell(v: unknown): string {
  if (v === undefined || v === null || v === '') return '-'
  return (typeof v === 'object' ? JSON.stringify(v) : String(v)).replace(/[\r\n\t]+/g, ' ')
}

/** Columns padded to their widest cell; a device's hostile name cannot break the layout (no newlines, no tabs). */
export function table<T>(rows: readonly T[], columns: readonly Column<T>[]): string {
  const cells = rows.map((r) => columns.map((c) => cell(c.value(r))))
  const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((row) => row[i]!.length)))
  const line = (values: string[]) => values.map((v, i) => (i === values.length - 1 ? v : v.padEnd(widths[i]!))).join('  ').trimEnd()
  return [line(columns.map((c) => c.header.toUpperCase())), ...cells.map(line)].join('\n')
}

/** Key/value pairs, one per line, for a single record. */
export function fields(pairs: [string, unknown][]): string {
  const width = Math.max(...pairs.map(([k]) => k.length))
  return pairs.map(([k, v]) => `${k.padEnd(width)}  ${cell(v)}`).join('\n')
}

export function json(value: unknown): string {
  return JSON.stringify(value, null, 2)
}

/** Parses an option's JSON, or names the option in a one-line error. */
export function parseJsonOption(option: string, text: string): unknown {
  try {
    return JSON.parse(text)
  } catch (e) {
    throw new CliError(`${option} is not valid JSON (${(e as Error).message})`)
  }
}

/** A whole number within [min, max], or a one-line error naming the option. */
export function intOption(option: string, text: string, min: number, max: number): number {
  const n = Number(text)
  if (!/^\d+$/.test(text) || n < min || n > max) throw new CliError(`${option} must be a whole number from ${min} to ${max}, not ${JSON.stringify(text)}`)
  return n
}
