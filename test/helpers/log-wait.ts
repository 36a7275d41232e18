// Log records from I/O threads reach the main thread's log a moment after the client saw the close:
// a test waits for the record it expects instead of reading the log at once.
type LogRecord = Record<string, unknown>

const closes = (records: LogRecord[]) => records.filter((r) => r.msg === 'connection closed')

/** How many connections were logged closed so far. */
export function closeCount(records: LogRecord[]): number {
  return closes(records).length
}

/**
 * The first close logged after the first `before` closes whose reason `match` accepts (5 s at
 * most); if none comes, the last close reason there is, so the assertion shows what happened.
 */
export async function closeReasonAfter(records: LogRecord[], before: number, match: (reason: string) => boolean = (r) => r.startsWith('connection refused'), timeoutMs = 5000): Promise<unknown> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const found = closes(records).slice(before).find((r) => match(String(r.reason)))
    if (found) return found.reason
    if (Date.now() >= deadline) return closes(records).at(-1)?.reason
    await new Promise((r) => setTimeout(r, 10))
  }
}

/** Waits (5 s at most) for a record `match` accepts; true if one came. */
export async function logged(records: LogRecord[], match: (r: LogRecord) => boolean, timeoutMs = 5000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (!records.some(match) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
  return records.some(match)
}
