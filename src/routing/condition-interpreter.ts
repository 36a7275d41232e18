// The reference evaluator of route-condition bytecode: plain JS over a PreparedMessage
// (route-message.ts), with the operator and function semantics of src/query-common. The WASM VM
// must agree with it on every program and message (test/route-vm-differential.test.ts).
import { functionById, resetStringBudget } from '../query-common/functions.js'
import { and, arithmetic, comparison, element, inList, member, negate, not, or, type Value } from '../query-common/values.js'
import { readConstants, type Constant } from './bytecode.js'
import type { CompiledCondition } from './condition-compiler.js'
import { prepareMessage, type PreparedMessage, type RouteMessage } from './route-message.js'

interface Loaded {
  view: DataView
  bytes: Uint8Array
  constants: Constant[]
  codeOffset: number
}

const loaded = new WeakMap<CompiledCondition, Loaded>()

function load(program: CompiledCondition): Loaded {
  let l = loaded.get(program)
  if (!l) {
    const b = program.bytes
    const view = new DataView(b.buffer, b.byteOffset, b.byteLength)
    l = { view, bytes: b, constants: readConstants(b), codeOffset: view.getUint32(4, true) }
    loaded.set(program, l)
  }
  return l
}

const COMPARISON_OPS = ['=', '!=', '<', '<=', '>', '>=']
const ARITHMETIC_OPS = ['+', '-', '*', '/', '%']

/** The value a condition evaluates to against a prepared message. */
export function evaluateCondition(program: CompiledCondition, message: PreparedMessage): Value {
  const { view, bytes, constants, codeOffset } = load(program)
  resetStringBudget()
  const stack: Value[] = []
  let pc = codeOffset
  for (;;) {
    const op = bytes[pc++]!
    switch (op) {
      case 0: return stack[stack.length - 1]
      case 1: stack.push(constants[view.getUint16(pc, true)]); pc += 2; break
      case 2: stack.push(undefined); break
      case 3: stack.push(null); break
      case 4: stack.push(true); break
      case 5: stack.push(false); break
      case 6: { // SYS
        const sys = message.sys.get(constants[view.getUint16(pc + 8, true)] as string)
        stack.push(sys !== undefined ? sys : message.app.get(constants[view.getUint16(pc + 10, true)] as string))
        pc += 12
        break
      }
      case 7: stack.push(message.app.get(constants[view.getUint16(pc + 4, true)] as string)); pc += 6; break
      case 8: stack.push(message.body); break
      case 9: stack.push(message.twin); break
      case 10: stack.push(member(stack.pop(), constants[view.getUint16(pc + 4, true)] as string)); pc += 6; break
      case 11: stack.push(element(stack.pop(), view.getUint32(pc, true))); pc += 4; break
      case 12: case 13: case 14: case 15: case 16: case 17: {
        const b = stack.pop(), a = stack.pop()
        stack.push(comparison(COMPARISON_OPS[op - 12]!, a, b))
        break
      }
      case 18: case 19: case 20: case 21: case 22: {
        const b = stack.pop(), a = stack.pop()
        stack.push(arithmetic(ARITHMETIC_OPS[op - 18]!, a, b))
        break
      }
      case 23: stack.push(negate(stack.pop())); break
      case 24: stack.push(not(stack.pop())); break
      case 25: { const b = stack.pop(), a = stack.pop(); stack.push(and(a, b)); break }
      case 26: { const b = stack.pop(), a = stack.pop(); stack.push(or(a, b)); break }
      case 27: case 28: {
        const top = stack[stack.length - 1]
        pc = top === (op === 27 ? false : true) ? codeOffset + view.getUint32(pc, true) : pc + 4
        break
      }
      case 29: case 30: {
        const n = view.getUint16(pc, true)
        const list: Value[] = []
        for (let k = 0; k < n; k++) list.push(constants[view.getUint16(pc + 2 + 2 * k, true)])
        pc += 2 + 2 * n
        const r = inList(stack.pop(), list)
        stack.push(op === 29 ? r : not(r))
        break
      }
      case 31: {
        const fn = functionById(bytes[pc]!), argc = bytes[pc + 1]!
        pc += 2
        const args = stack.splice(stack.length - argc, argc)
        stack.push(fn.impl(args))
        break
      }
      default: throw new Error(`bad opcode ${op} at ${pc - 1}`)
    }
  }
}

/** Whether the route matches: the condition evaluates to exactly `true` (routing.md). */
export function conditionMatches(program: CompiledCondition, message: PreparedMessage | RouteMessage): boolean {
  const prepared = 'sys' in message && message.sys instanceof Map ? message as PreparedMessage : prepareMessage(message as RouteMessage)
  return evaluateCondition(program, prepared) === true
}
