// Route conditions evaluated by the WASM VM (asm/route-vm.ts). A WasmRouteSet copies its compiled
// programs into module memory once; per message, loadMessage() encodes the message image
// (src/routing/message-image.ts) straight into the set's image region; then each route, or all of
// them in one call, is evaluated with no JS object built per evaluation. When the VM cannot
// guarantee the reference's exact answer (EXP, POWER, unusual AS_NUMBER input, non-ASCII
// LOWER/UPPER) it bails and the route is evaluated by the JS interpreter on the same message.
// Memory: a set's regions are never returned to the module (ScratchRegion has no free); route sets
// are replaced only when routes change, so the waste stays small.
import { evaluateCondition } from '../routing/condition-interpreter.js'
import { compileCondition, type CompiledCondition } from '../routing/condition-compiler.js'
import { encodeMessageImage } from '../routing/message-image.js'
import { defaultInterner, type NameInterner } from '../routing/name-interner.js'
import { prepareMessage, type PreparedMessage, type RouteMessage } from '../routing/route-message.js'
import type { Value } from '../query-common/values.js'
import { memoryBytes, memoryGeneration, ScratchRegion, wasm } from './hyperhub-wasm.js'

interface RouteVmExports {
  routeEval(prog: number, image: number, work: number, workLen: number, out: number): number
  routeEvalAll(progs: number, count: number, image: number, work: number, workLen: number, results: number, out: number): void
}
const vm = wasm as unknown as RouteVmExports

export const RESULT_UNDEFINED = 0
export const RESULT_TRUE = 7
export const RESULT_BAIL = -1
export const RESULT_BAD_PROGRAM = -2

/** What evaluateValue returns for an array or object result (the VM does not rebuild them). */
export const WASM_ARRAY = Object.freeze({ wasm: 'array' as const })
export const WASM_OBJECT = Object.freeze({ wasm: 'object' as const })

const STACK_BYTES = 257 * 16
const ARENA_BYTES = 64 * 1024
// shared by every set: each call is synchronous and finishes before another can start
const work = new ScratchRegion(STACK_BYTES + ARENA_BYTES)
const out = new ScratchRegion(16)

export class WasmRouteSet {
  readonly programs: CompiledCondition[]
  private readonly code: ScratchRegion
  private readonly table: ScratchRegion
  private readonly results: ScratchRegion
  private readonly image = new ScratchRegion(4096)
  private readonly addresses: number[] = []
  private current: PreparedMessage | undefined
  private resultView: Int32Array | undefined
  private resultGeneration = -1

  /** Conditions as text (compiled with `interner`) or already compiled with that interner. */
  constructor(conditions: ReadonlyArray<string | CompiledCondition>, readonly interner: NameInterner = defaultInterner) {
    this.programs = conditions.map((c) => typeof c === 'string' ? compileCondition(c, interner) : c)
    let total = 0
    for (const p of this.programs) total += (p.bytes.length + 7) & ~7
    this.code = new ScratchRegion(Math.max(total, 8))
    this.table = new ScratchRegion(Math.max(4 * this.programs.length, 4))
    this.results = new ScratchRegion(Math.max(4 * this.programs.length, 4))
    let at = this.code.ptr
    for (const p of this.programs) {
      memoryBytes.set(p.bytes, at)
      this.addresses.push(at)
      at += (p.bytes.length + 7) & ~7
    }
    for (let k = 0; k < this.addresses.length; k++) memoryBytes.writeUInt32LE(this.addresses[k]!, this.table.ptr + 4 * k)
  }

  get size(): number {
    return this.programs.length
  }

  /** Makes `message` the one the routes are evaluated against: encodes its image into WASM memory. */
  loadMessage(message: RouteMessage | PreparedMessage): PreparedMessage {
    const prepared = isPrepared(message) ? message : prepareMessage(message)
    const bytes = encodeMessageImage(prepared, this.interner)
    this.image.ensure(bytes.length)
    memoryBytes.set(bytes, this.image.ptr)
    this.current = prepared
    return prepared
  }

  private code0(route: number): number {
    if (this.current === undefined) throw new Error('loadMessage() first')
    return vm.routeEval(this.addresses[route]!, this.image.ptr, work.ptr, work.capacity, out.ptr)
  }

  /** Whether route `route` matches the loaded message. */
  matches(route: number): boolean {
    const code = this.code0(route)
    if (code === RESULT_BAIL) return evaluateCondition(this.programs[route]!, this.current!) === true
    if (code === RESULT_BAD_PROGRAM) throw new Error(`route ${route}: the VM rejected the program`)
    return code === RESULT_TRUE
  }

  /** Evaluates every route in one call; `into[k]` = whether route k matches. */
  matchAll(into: boolean[] = []): boolean[] {
    if (this.current === undefined) throw new Error('loadMessage() first')
    const n = this.programs.length
    vm.routeEvalAll(this.table.ptr, n, this.image.ptr, work.ptr, work.capacity, this.results.ptr, out.ptr)
    if (this.resultGeneration !== memoryGeneration || this.resultView === undefined) {
      this.resultView = new Int32Array(memoryBytes.buffer, this.results.ptr, n)
      this.resultGeneration = memoryGeneration
    }
    const codes = this.resultView
    for (let k = 0; k < n; k++) {
      const code = codes[k]!
      if (code === RESULT_BAIL) into[k] = evaluateCondition(this.programs[k]!, this.current) === true
      else if (code === RESULT_BAD_PROGRAM) throw new Error(`route ${k}: the VM rejected the program`)
      else into[k] = code === RESULT_TRUE
    }
    return into
  }

  /** The value route `route`'s expression yields (arrays and objects as WASM_ARRAY / WASM_OBJECT). */
  evaluateValue(route: number): Value | typeof WASM_ARRAY | typeof WASM_OBJECT {
    return resultValue(this.code0(route), this.programs[route]!, this.current!, route)
  }

  /** Whether the last evaluateValue/matches of `route` needed the JS fallback (tests). */
  bails(route: number): boolean {
    return this.code0(route) === RESULT_BAIL
  }
}

/** A VM result code as a value; a bail is evaluated by the JS interpreter on the same message. */
function resultValue(code: number, program: CompiledCondition, message: PreparedMessage, route: number): Value | typeof WASM_ARRAY | typeof WASM_OBJECT {
  const mem = memoryBytes
  switch (code) {
    case RESULT_BAIL: {
      const v = evaluateCondition(program, message)
      return Array.isArray(v) ? WASM_ARRAY : v !== null && typeof v === 'object' ? WASM_OBJECT : v
    }
    case 0: return undefined
    case 1: return null
    case 2: return false
    case 7: return true
    case 3: return mem.readDoubleLE(out.ptr)
    case 4: {
      const ptr = mem.readUInt32LE(out.ptr + 8), len = mem.readInt32LE(out.ptr + 12)
      return mem.toString('utf16le', ptr, ptr + 2 * len)
    }
    case 5: return WASM_ARRAY
    case 6: return WASM_OBJECT
    default: throw new Error(`route ${route}: the VM rejected the program (code ${code})`)
  }
}

// one-off evaluations (the route test API) share these regions, grown as needed: a WasmRouteSet per
// call would reserve memory that is never returned, so each test would grow the module for good
let once: { code: ScratchRegion; image: ScratchRegion } | undefined

/**
 * The value each program yields for one message, for programs evaluated once and dropped (the route
 * test API). `programs` and the image must share `interner`: give each call a fresh one, or every
 * name ever tested would stay interned in the hub's own.
 */
export function evaluateOnce(programs: readonly CompiledCondition[], message: RouteMessage | PreparedMessage, interner: NameInterner): (Value | typeof WASM_ARRAY | typeof WASM_OBJECT)[] {
  once ??= { code: new ScratchRegion(4096), image: new ScratchRegion(4096) }
  const prepared = isPrepared(message) ? message : prepareMessage(message)
  const image = encodeMessageImage(prepared, interner)
  once.image.ensure(image.length)
  memoryBytes.set(image, once.image.ptr)
  return programs.map((p, k) => {
    once!.code.ensure(p.bytes.length)
    memoryBytes.set(p.bytes, once!.code.ptr)
    return resultValue(vm.routeEval(once!.code.ptr, once!.image.ptr, work.ptr, work.capacity, out.ptr), p, prepared, k)
  })
}

function isPrepared(m: RouteMessage | PreparedMessage): m is PreparedMessage {
  return (m as PreparedMessage).sys instanceof Map
}
