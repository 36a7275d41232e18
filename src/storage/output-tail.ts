// A child's stdout or stderr, read line by line with bounded memory: the last few KB are kept for
// error messages, and a line that never ends is cut rather than buffered without limit.
export class OutputTail {
  private tail = ''
  private partial = ''

  constructor(private readonly maxChars = 8192, private readonly maxLine = 2048, private readonly onLine: (line: string) => void = () => {}) {}

  push(chunk: Buffer | string): void {
    const text = this.partial + chunk.toString()
    const lines = text.split('\n')
    this.partial = lines.pop()!
    if (this.partial.length > this.maxLine) {
      lines.push(this.partial.slice(0, this.maxLine) + '…')
      this.partial = ''
    }
    for (const raw of lines) {
      const line = raw.replace(/\r$/, '')
      this.remember(line.length > this.maxLine ? line.slice(0, this.maxLine) + '…' : line)
    }
  }

  private remember(line: string): void {
    this.tail += line + '\n'
    if (this.tail.length > this.maxChars) this.tail = this.tail.slice(this.tail.length - this.maxChars)
    this.onLine(line)
  }

  /** The last lines seen, including an unfinished one. */
  text(): string {
    return (this.tail + this.partial.slice(0, this.maxLine)).trimEnd()
  }
}
