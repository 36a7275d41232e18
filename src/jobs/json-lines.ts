// Splits a byte stream into lines without holding more than one line (up to a bound) and one chunk:
// the import job's reader of `devices.txt`. A line past the bound is reported by its number and
// skipped to its end, never buffered. `\r\n` and a UTF-8 byte order mark on the first line are
// taken as .NET writes them.

export interface StreamLine {
  /** 1-based */
  lineNumber: number
  /** the line without its end; undefined when it was longer than the bound */
  text?: Buffer
  /** bytes of the stream consumed up to the end of this line */
  offset: number
}

const NEWLINE = 0x0a
const CR = 0x0d
const BOM = Buffer.from([0xef, 0xbb, 0xbf])

export async function* streamLines(source: AsyncIterable<Buffer | string>, maxLineBytes: number): AsyncGenerator<StreamLine> {
  let pieces: Buffer[] = []
  let held = 0
  let tooLong = false
  let lineNumber = 1
  let offset = 0
  const finish = (): StreamLine => {
    let text: Buffer | undefined
    if (!tooLong) {
      text = pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, held)
      if (text.length > 0 && text[text.length - 1] === CR) text = text.subarray(0, text.length - 1)
      if (lineNumber === 1 && text.subarray(0, 3).equals(BOM)) text = text.subarray(3)
    }
    const line = { lineNumber: lineNumber++, offset, ...(text ? { text } : {}) }
    pieces = []
    held = 0
    tooLong = false
    return line
  }
  const take = (part: Buffer) => {
    if (tooLong) return
    if (held + part.length > maxLineBytes + 1) { // +1: the \r of a line of exactly the bound
      tooLong = true
      pieces = []
      held = 0
      return
    }
    if (part.length > 0) { pieces.push(part); held += part.length }
  }
  for await (const raw of source) {
    const chunk = typeof raw === 'string' ? Buffer.from(raw) : raw
    let from = 0
    for (;;) {
      const at = chunk.indexOf(NEWLINE, from)
      if (at < 0) break
      // a copy: the chunk's memory is not held by a line kept in a batch
      take(Buffer.from(chunk.subarray(from, at)))
      offset += at + 1 - from
      from = at + 1
      yield finish()
    }
    take(Buffer.from(chunk.subarray(from)))
    offset += chunk.length - from
  }
  if (held > 0 || tooLong) yield finish()
}
