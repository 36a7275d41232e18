// Names a program looks up, numbered so the WASM VM matches integers instead of strings. Three
// namespaces: system property keywords (canonical lower case), application property names (lower
// case) and JSON member names (exact). Id 0 means "no program asks for this name": the message
// image leaves such members out altogether, so only the parts of a body that some route can reach
// are copied into WASM memory. Likewise array elements past the largest index any program uses.
// Programs and images must use the same interner, and an image must be built after the programs it
// is evaluated with were compiled (a name first interned later is not in older images).

export type NameSpace = 's' | 'a' | 'k'

export class NameInterner {
  private readonly spaces = { s: new Map<string, number>(), a: new Map<string, number>(), k: new Map<string, number>() }
  private next = 1
  /** The largest array index any program uses (-1: none). */
  maxIndex = -1

  intern(space: NameSpace, name: string): number {
    const map = this.spaces[space]
    let id = map.get(name)
    if (id === undefined) {
      id = this.next++
      map.set(name, id)
    }
    return id
  }

  noteIndex(index: number): void {
    if (index > this.maxIndex) this.maxIndex = index
  }

  /** The id of a name, or 0 if no program uses it. */
  lookup(space: NameSpace, name: string): number {
    return this.spaces[space].get(name) ?? 0
  }

  /** The member-name map itself, for the image encoder's inner loop. */
  get memberIds(): ReadonlyMap<string, number> {
    return this.spaces.k
  }

  get size(): number {
    return this.next - 1
  }
}

/** The interner of every program compiled without an explicit one. */
export const defaultInterner = new NameInterner()
