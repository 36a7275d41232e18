// The one lexer of both IoT Hub languages: route conditions (routing.md) and twin queries
// (query-language.md). Both share the expression sub-language, so they share tokens.
// Choices where the spec is silent or uncertain:
// - Names: letters, digits, `_`, `$`, any non-ASCII character; a `-` joins two name parts when it
//   sits between a name character and a letter or `_` with no spaces (`iothub-message-schema`,
//   `$dt-dataschema` are names, `a - b` and `x-1` are subtractions). Azure documents such names.
// - `[[name]]` right after a `.` is an escaped name (query-language.md: `tags.[[group]].name`).
// - Strings in single or double quotes, escapes \' \" \\ \/ \b \f \n \r \t \uXXXX.
// - Numbers: decimal (`12`, `1.5`, `.5`, `1e3`) and hexadecimal `0x1F`; non-finite → error.
import { QuerySyntaxError } from './errors.js'

export type TokenKind = 'name' | 'number' | 'string' | 'op' | 'eof'

export interface Token {
  kind: TokenKind
  /** Names as written (escaped names without brackets), operators as written, string contents. */
  text: string
  value?: number
  /** Offset of the first character in the source. */
  pos: number
  /** True for `[[...]]` names: never a keyword. */
  escaped?: boolean
}

const TWO_CHAR_OPS = new Set(['<=', '>=', '<>', '!='])
const ONE_CHAR_OPS = new Set(['(', ')', '[', ']', ',', '.', '+', '-', '*', '/', '%', '=', '<', '>'])

function isNameStart(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c === 36 || c > 127
}
function isNameChar(c: number): boolean {
  return isNameStart(c) || (c >= 48 && c <= 57)
}
function isLetter(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c > 127
}
function isDigit(c: number): boolean {
  return c >= 48 && c <= 57
}

const ESCAPES: Record<string, string> = { "'": "'", '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' }

/** Splits `source` into tokens, ending with one `eof` token; throws QuerySyntaxError with the position. */
export function tokenize(source: string): Token[] {
  const tokens: Token[] = []
  let i = 0
  const n = source.length
  while (i < n) {
    const c = source.charCodeAt(i)
    if (c === 32 || c === 9 || c === 10 || c === 13) { i++; continue }
    const start = i
    if (isNameStart(c)) {
      i++
      for (;;) {
        while (i < n && isNameChar(source.charCodeAt(i))) i++
        if (i + 1 < n && source.charCodeAt(i) === 45 && isLetter(source.charCodeAt(i + 1))) { i += 2; continue }
        break
      }
      tokens.push({ kind: 'name', text: source.slice(start, i), pos: start })
      continue
    }
    if (isDigit(c) || (c === 46 && i + 1 < n && isDigit(source.charCodeAt(i + 1)))) {
      let value: number
      if (c === 48 && (source[i + 1] === 'x' || source[i + 1] === 'X')) {
        i += 2
        const digitsStart = i
        while (i < n && /[0-9a-fA-F]/.test(source[i]!)) i++
        if (i === digitsStart) throw new QuerySyntaxError('hexadecimal literal needs digits after 0x', source, start)
        value = parseInt(source.slice(digitsStart, i), 16)
      } else {
        while (i < n && isDigit(source.charCodeAt(i))) i++
        if (source[i] === '.') { i++; while (i < n && isDigit(source.charCodeAt(i))) i++ }
        if (source[i] === 'e' || source[i] === 'E') {
          let j = i + 1
          if (source[j] === '+' || source[j] === '-') j++
          if (j < n && isDigit(source.charCodeAt(j))) {
            i = j
            while (i < n && isDigit(source.charCodeAt(i))) i++
          }
        }
        value = Number(source.slice(start, i))
      }
      if (i < n && isNameStart(source.charCodeAt(i))) throw new QuerySyntaxError(`invalid number '${source.slice(start, i + 1)}'`, source, start)
      if (!Number.isFinite(value)) throw new QuerySyntaxError('number out of range', source, start)
      tokens.push({ kind: 'number', text: source.slice(start, i), value, pos: start })
      continue
    }
    if (c === 39 || c === 34) {
      const quote = source[i]!
      i++
      let text = ''
      for (;;) {
        if (i >= n) throw new QuerySyntaxError('unterminated string literal', source, start)
        const ch = source[i]!
        if (ch === quote) { i++; break }
        if (ch === '\\') {
          const e = source[i + 1]
          if (e === 'u') {
            const hex = source.slice(i + 2, i + 6)
            if (!/^[0-9a-fA-F]{4}$/.test(hex)) throw new QuerySyntaxError('invalid \\u escape in string', source, i)
            text += String.fromCharCode(parseInt(hex, 16))
            i += 6
            continue
          }
          const mapped = e === undefined ? undefined : ESCAPES[e]
          if (mapped === undefined) throw new QuerySyntaxError(`invalid escape '\\${e ?? ''}' in string`, source, i)
          text += mapped
          i += 2
          continue
        }
        text += ch
        i++
      }
      tokens.push({ kind: 'string', text, pos: start })
      continue
    }
    if (c === 91 && source[i + 1] === '[' && tokens.length > 0 && tokens[tokens.length - 1]!.text === '.' && tokens[tokens.length - 1]!.kind === 'op') {
      const end = source.indexOf(']]', i + 2)
      if (end < 0) throw new QuerySyntaxError("unterminated escaped name: missing ']]'", source, start)
      const name = source.slice(i + 2, end)
      if (name.length === 0) throw new QuerySyntaxError('empty escaped name', source, start)
      tokens.push({ kind: 'name', text: name, pos: start, escaped: true })
      i = end + 2
      continue
    }
    const two = source.slice(i, i + 2)
    if (TWO_CHAR_OPS.has(two)) {
      tokens.push({ kind: 'op', text: two, pos: start })
      i += 2
      continue
    }
    if (ONE_CHAR_OPS.has(source[i]!)) {
      tokens.push({ kind: 'op', text: source[i]!, pos: start })
      i++
      continue
    }
    throw new QuerySyntaxError(`unexpected character '${source[i]}'`, source, start)
  }
  tokens.push({ kind: 'eof', text: '', pos: n })
  return tokens
}
