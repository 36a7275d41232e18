// How deeply JSON text nests, found in one pass without recursion. JSON.parse takes any depth, but
// JSON.stringify and msgpackr's packer recurse and overflow the stack near 5,000 levels, so text a
// client sent is checked before anything deep can reach them.

/** Nesting the hub accepts in a request body or a device payload it parses (twins allow 10 inside a section). */
export const MAX_JSON_DEPTH = 64

const QUOTE = 0x22, BACKSLASH = 0x5c, OPEN_BRACE = 0x7b, CLOSE_BRACE = 0x7d, OPEN_BRACKET = 0x5b, CLOSE_BRACKET = 0x5d

/** Whether objects and arrays in `text` nest deeper than `limit` (strings are skipped; the text need not be valid). */
export function jsonDeeperThan(text: string | Uint8Array, limit = MAX_JSON_DEPTH): boolean {
  const at = typeof text === 'string' ? (i: number) => text.charCodeAt(i) : (i: number) => text[i]!
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = at(i)
    if (inString) {
      if (c === BACKSLASH) i++
      else if (c === QUOTE) inString = false
    } else if (c === QUOTE) {
      inString = true
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (++depth > limit) return true
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      depth--
    }
  }
  return false
}
