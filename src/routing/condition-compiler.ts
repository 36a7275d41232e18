// Route condition → bytecode (layout in bytecode.ts). Names are resolved here: system property
// keywords to their canonical form, application property names to lower case, every name to an
// interned id for the WASM VM. Compile errors (a `doc` path, a program too deep for the VM's stack)
// are QuerySyntaxErrors with the position of the offending expression.
import type { Expr, Literal } from '../query-common/ast.js'
import { QuerySyntaxError } from '../query-common/errors.js'
import { lookupFunction } from '../query-common/functions.js'
import { HEADER_BYTES, MAGIC, Op, Tag } from './bytecode.js'
import { parseCondition } from './condition-parser.js'
import { defaultInterner, type NameInterner } from './name-interner.js'
import { canonicalSystemName } from './route-message.js'

/** The VM's stack holds this many values; deeper programs do not compile. */
export const MAX_STACK = 256
/** Longest path (the message image keeps nesting up to MAX_IMAGE_DEPTH = 128). */
export const MAX_PATH = 100

export interface CompiledCondition {
  source: string
  bytes: Uint8Array
}

class Emitter {
  code: number[] = []
  constants: Literal[] = []
  private constantIndex = new Map<string, number>()
  depth = 0
  maxDepth = 0

  constructor(readonly source: string, readonly interner: NameInterner) {}

  u8(v: number): void { this.code.push(v & 255) }
  u16(v: number): void { this.code.push(v & 255, (v >>> 8) & 255) }
  u32(v: number): void { this.code.push(v & 255, (v >>> 8) & 255, (v >>> 16) & 255, (v >>> 24) & 255) }
  patch32(at: number, v: number): void {
    this.code[at] = v & 255; this.code[at + 1] = (v >>> 8) & 255; this.code[at + 2] = (v >>> 16) & 255; this.code[at + 3] = (v >>> 24) & 255
  }

  constant(v: Literal): number {
    const key = v === undefined ? 'u' : typeof v + ':' + String(v)
    let k = this.constantIndex.get(key)
    if (k === undefined) {
      k = this.constants.length
      if (k > 0xffff) throw new QuerySyntaxError('too many constants', this.source, 0)
      this.constants.push(v)
      this.constantIndex.set(key, k)
    }
    return k
  }

  push(n: number, pos: number): void {
    this.depth += n
    if (this.depth > this.maxDepth) this.maxDepth = this.depth
    if (this.maxDepth > MAX_STACK) throw new QuerySyntaxError('expression too complex', this.source, pos)
  }

  emit(e: Expr): void {
    switch (e.kind) {
      case 'literal': return this.literal(e.value, e.pos)
      case 'array': throw new QuerySyntaxError('array constants are only allowed after IN / NIN in route conditions', this.source, e.pos)
      case 'path': return this.path(e)
      case 'unary':
        this.emit(e.operand)
        return this.u8(e.op === 'NOT' ? Op.NOT : Op.NEG)
      case 'binary': {
        if (e.op === 'AND' || e.op === 'OR') {
          this.emit(e.left)
          this.u8(e.op === 'AND' ? Op.JFK : Op.JTK)
          const at = this.code.length
          this.u32(0)
          this.emit(e.right)
          this.u8(e.op === 'AND' ? Op.AND : Op.OR)
          this.depth--
          return this.patch32(at, this.code.length)
        }
        this.emit(e.left)
        this.emit(e.right)
        this.u8(BINARY[e.op]!)
        this.depth--
        return
      }
      case 'in': {
        this.emit(e.operand)
        this.u8(e.negated ? Op.NIN : Op.IN)
        this.u16(e.list.length)
        for (const v of e.list) this.u16(this.constant(v))
        return
      }
      case 'call': {
        const spec = lookupFunction(e.fn)!
        for (const a of e.args) this.emit(a)
        this.u8(Op.CALL)
        this.u8(spec.id)
        this.u8(e.args.length)
        this.depth -= e.args.length - 1
        return
      }
    }
  }

  private literal(v: Literal, pos: number): void {
    this.push(1, pos)
    if (v === undefined) this.u8(Op.UNDEF)
    else if (v === null) this.u8(Op.NULL)
    else if (v === true) this.u8(Op.TRUE)
    else if (v === false) this.u8(Op.FALSE)
    else { this.u8(Op.CONST); this.u16(this.constant(v)) }
  }

  private path(e: Extract<Expr, { kind: 'path' }>): void {
    const segments = e.segments
    if (segments.length > MAX_PATH) throw new QuerySyntaxError(`paths may have at most ${MAX_PATH} parts`, this.source, e.pos)
    switch (e.root) {
      case 'doc': throw new QuerySyntaxError('document paths are not valid in route conditions', this.source, e.pos)
      case 'app': {
        const name = e.name.toLowerCase()
        this.push(1, e.pos)
        this.u8(Op.APP); this.u32(this.interner.intern('a', name)); this.u16(this.constant(name))
        break
      }
      case 'sys': {
        const sysName = canonicalSystemName(e.name), appName = e.name.toLowerCase()
        this.push(1, e.pos)
        this.u8(Op.SYS); this.u32(this.interner.intern('s', sysName)); this.u32(this.interner.intern('a', appName))
        this.u16(this.constant(sysName)); this.u16(this.constant(appName))
        break
      }
      case 'body':
        // routing.md: the body root itself cannot be queried ($body, $body[0] → undefined)
        if (segments.length === 0 || typeof segments[0] === 'number') return this.literal(undefined, e.pos)
        this.push(1, e.pos)
        this.u8(Op.BODY)
        break
      case 'twin':
        this.push(1, e.pos)
        this.u8(Op.TWIN)
        break
    }
    for (const seg of segments) {
      if (typeof seg === 'number') { this.interner.noteIndex(seg); this.u8(Op.INDEX); this.u32(seg) }
      else { this.u8(Op.MEMBER); this.u32(this.interner.intern('k', seg)); this.u16(this.constant(seg)) }
    }
  }
}

const BINARY: Record<string, Op> = {
  '=': Op.EQ, '!=': Op.NE, '<': Op.LT, '<=': Op.LE, '>': Op.GT, '>=': Op.GE,
  '+': Op.ADD, '-': Op.SUB, '*': Op.MUL, '/': Op.DIV, '%': Op.MOD,
}

function constantBytes(v: Literal): number[] {
  if (typeof v === 'number') {
    const b = new Uint8Array(9)
    b[0] = Tag.NUM
    new DataView(b.buffer).setFloat64(1, v, true)
    return [...b]
  }
  if (typeof v === 'string') {
    const out = [Tag.STR, v.length & 255, (v.length >>> 8) & 255, (v.length >>> 16) & 255, (v.length >>> 24) & 255]
    for (let i = 0; i < v.length; i++) { const c = v.charCodeAt(i); out.push(c & 255, c >>> 8) }
    return out
  }
  if (typeof v === 'boolean') return [Tag.BOOL, v ? 1 : 0]
  return [v === null ? Tag.NULL : Tag.UNDEF]
}

/** Compiles an expression tree (from parseCondition) into a program. */
export function compileExpression(e: Expr, source = '', interner: NameInterner = defaultInterner): CompiledCondition {
  const em = new Emitter(source, interner)
  em.emit(e)
  em.u8(Op.END)
  const pool = em.constants.map(constantBytes)
  const tableEnd = HEADER_BYTES + 4 * pool.length
  let at = tableEnd
  const offsets = pool.map((p) => { const o = at; at += p.length; return o })
  const codeOffset = at
  const bytes = new Uint8Array(codeOffset + em.code.length)
  const view = new DataView(bytes.buffer)
  view.setUint32(0, MAGIC, true)
  view.setUint32(4, codeOffset, true)
  view.setUint32(8, em.code.length, true)
  view.setUint16(12, pool.length, true)
  view.setUint16(14, em.maxDepth, true)
  offsets.forEach((o, k) => { view.setUint32(HEADER_BYTES + 4 * k, o, true); bytes.set(pool[k]!, o) })
  bytes.set(em.code, codeOffset)
  return { source, bytes }
}

/** Parses and compiles a route condition; throws QuerySyntaxError with the position. */
export function compileCondition(source: string, interner: NameInterner = defaultInterner): CompiledCondition {
  try {
    return compileExpression(parseCondition(source), source, interner)
  } catch (e) {
    // thousands of chained ORs are flat to read but deep to walk: the stack, not the language, ends them
    if (e instanceof RangeError) throw new QuerySyntaxError('the condition has too many terms to compile; split it into several routes', source, 0)
    throw e
  }
}
