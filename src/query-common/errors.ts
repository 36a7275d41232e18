// The error both languages throw for text that does not compile: where (offset, 1-based line and
// column) and what. The message reads "Syntax error at line 1, column 7: ...".

export class QuerySyntaxError extends Error {
  readonly offset: number
  readonly line: number
  readonly column: number
  readonly detail: string

  constructor(detail: string, source: string, offset: number) {
    let line = 1
    let lineStart = 0
    for (let i = 0; i < offset && i < source.length; i++) {
      if (source.charCodeAt(i) === 10) { line++; lineStart = i + 1 }
    }
    const column = offset - lineStart + 1
    super(`Syntax error at line ${line}, column ${column}: ${detail}`)
    this.name = 'QuerySyntaxError'
    this.offset = offset
    this.line = line
    this.column = column
    this.detail = detail
  }
}
