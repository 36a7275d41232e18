// The route-condition bytecode: one Uint8Array, read by the JS reference interpreter
// (condition-interpreter.ts) and the WASM VM (asm/route-vm.ts, which repeats these numbers).
// Little-endian, operands unaligned:
//   0  u32 magic 'HRC1'     4  u32 code offset     8  u32 code length
//   12 u16 constant count   14 u16 maximum stack depth
//   16 u32 offset of each constant (from the program start), then the constants, then the code.
// A constant is a tag byte then its payload: NUM f64; STR u32 length in UTF-16 units, the units;
// BOOL u8; NULL and UNDEF nothing.
// A stack machine; values: undefined, null, bool, number, string, array, object. Instructions:
//   END                         the result is the top of the stack
//   CONST k:u16 | UNDEF | NULL | TRUE | FALSE
//   SYS sysId:u32 appId:u32 sysName:u16 appName:u16   system property, else the app property
//   APP appId:u32 appName:u16 | BODY | TWIN            roots (ids: name-interner.ts; names: constants)
//   MEMBER keyId:u32 keyName:u16 | INDEX i:u32         pop a value, push its member / element
//   EQ NE LT LE GT GE ADD SUB MUL DIV MOD (pop 2, push 1), NEG NOT (pop 1, push 1), AND OR
//   JFK target:u32 / JTK target:u32   if the top is false / true, jump (keeping it) to code offset
//   IN n:u16 k:u16×n / NIN …          pop x, push x IN / NIN the constants
//   CALL fn:u8 argc:u8               pop argc arguments, push the function's result

export const MAGIC = 0x31435248
export const HEADER_BYTES = 16

export const enum Op {
  END = 0, CONST = 1, UNDEF = 2, NULL = 3, TRUE = 4, FALSE = 5, SYS = 6, APP = 7, BODY = 8, TWIN = 9,
  MEMBER = 10, INDEX = 11, EQ = 12, NE = 13, LT = 14, LE = 15, GT = 16, GE = 17,
  ADD = 18, SUB = 19, MUL = 20, DIV = 21, MOD = 22, NEG = 23, NOT = 24, AND = 25, OR = 26,
  JFK = 27, JTK = 28, IN = 29, NIN = 30, CALL = 31,
}

/** Value tags, shared by constants, the message image and the WASM VM's stack. */
export const enum Tag { UNDEF = 0, NULL = 1, BOOL = 2, NUM = 3, STR = 4, ARR = 5, OBJ = 6 }

export const OP_NAMES = ['END', 'CONST', 'UNDEF', 'NULL', 'TRUE', 'FALSE', 'SYS', 'APP', 'BODY', 'TWIN', 'MEMBER', 'INDEX',
  'EQ', 'NE', 'LT', 'LE', 'GT', 'GE', 'ADD', 'SUB', 'MUL', 'DIV', 'MOD', 'NEG', 'NOT', 'AND', 'OR', 'JFK', 'JTK', 'IN', 'NIN', 'CALL']

/** Operand bytes after each opcode (IN/NIN: 2 + 2 per constant, computed by readers). */
export const OPERAND_BYTES = [0, 2, 0, 0, 0, 0, 12, 6, 0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 4, -1, -1, 2]

export type Constant = undefined | null | boolean | number | string

/** Decodes the constant pool of a program. */
export function readConstants(bytes: Uint8Array): Constant[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (view.getUint32(0, true) !== MAGIC) throw new Error('not a route-condition program')
  const count = view.getUint16(12, true)
  const out: Constant[] = []
  for (let k = 0; k < count; k++) {
    const at = view.getUint32(HEADER_BYTES + 4 * k, true)
    const tag = bytes[at]
    if (tag === Tag.NUM) out.push(view.getFloat64(at + 1, true))
    else if (tag === Tag.STR) {
      const len = view.getUint32(at + 1, true)
      out.push(Buffer.from(bytes.buffer, bytes.byteOffset + at + 5, len * 2).toString('utf16le'))
    } else if (tag === Tag.BOOL) out.push(bytes[at + 1] === 1)
    else if (tag === Tag.NULL) out.push(null)
    else out.push(undefined)
  }
  return out
}
