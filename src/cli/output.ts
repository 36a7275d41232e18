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

// C0 and C1 controls, DEL, and the bidirectional overrides and isolates: what a terminal would obey
const CONTROLS = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g
// what JSON.stringify leaves as it is (it escapes C0 itself, and the line breaks between members must stay)
const JSON_CONTROLS = /[\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g
const escaped = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`

/** Text from the hub or a device made safe to print: controls shown as \uXXXX, never obeyed by the terminal. */
export function printable(text: string): string {
  return text.replace(CONTROLS, escaped)
}

function cell(v: unknown): string {
  if (v === undefined || v === null || v === '') return '-'
  return printable((typeof v === 'object' ? JSON.stringify(v) : String(v)).replace(/[\r\n\t]+/g, ' '))
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

/** JSON for people and scripts; JSON.stringify escapes C0 controls, and this the C1 ones, DEL and bidi overrides (still valid JSON). */
export function json(value: unknown, indent = 2): string {
  return JSON.stringify(value, null, indent).replace(JSON_CONTROLS, escaped)
}

/**
 * A device id or other name as one URL path segment. `.` and `..` are refused: URL parsing folds them
 * (and their %2E forms) away, so `/devices/..` would reach `/`, and `--module ..` the device itself.
 */
export function segment(id: string): string {
  if (id === '.' || id === '..') throw new CliError(`the id ${JSON.stringify(id)} cannot be named in a URL (it is a path step); rename the device or module`)
  return encodeURIComponent(id)
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
