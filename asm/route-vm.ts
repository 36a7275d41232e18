// The route-condition VM: runs a program (src/routing/bytecode.ts) against a message image
// (src/routing/message-image.ts), both already in this module's memory. Allocates nothing:
// `work` (JS's scratch) holds the value stack and an arena for strings made by CONCAT/LOWER/UPPER.
// It must give exactly the JS interpreter's answer (src/routing/condition-interpreter.ts); where that
// is not cheap to guarantee it returns BAIL and JS evaluates the route instead:
// EXP and POWER (libm results can differ in the last bit), AS_NUMBER beyond the exact fast path,
// LOWER/UPPER of non-ASCII text, a full string arena.
// Result codes: 0 undefined, 1 null, 2 false, 3 number, 4 string, 5 array, 6 object, 7 true,
// -1 bail (ask JS), -2 bad program. `out`: f64 number at 0; string address at 8, length at 12.

const T_UNDEF: i32 = 0
const T_NULL: i32 = 1
const T_BOOL: i32 = 2
const T_NUM: i32 = 3
const T_STR: i32 = 4
const T_ARR: i32 = 5
const T_OBJ: i32 = 6

export const ROUTE_BAIL: i32 = -1
export const ROUTE_BAD_PROGRAM: i32 = -2
const PROGRAM_MAGIC: u32 = 0x31435248
const STACK_SLOTS: i32 = 256
const SLOT: usize = 16 // tag i32 @0, small i32 @4 (bool, string length), f64 or address @8

const POW10: usize = memory.data<f64>([1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
  1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22])

let arena: usize = 0
let arenaEnd: usize = 0
let bail: bool = false

@inline function tagOf(s: usize): i32 { return load<i32>(s) }
@inline function setUndef(s: usize): void { store<i32>(s, T_UNDEF) }
@inline function setBool(s: usize, v: bool): void { store<i32>(s, T_BOOL); store<i32>(s, v ? 1 : 0, 4) }
@inline function setNum(s: usize, v: f64): void { store<i32>(s, T_NUM); store<f64>(s, v, 8) }
@inline function setStr(s: usize, ptr: usize, len: i32): void { store<i32>(s, T_STR); store<i32>(s, len, 4); store<u32>(s, <u32>ptr, 8) }
@inline function num(s: usize): f64 { return load<f64>(s, 8) }
@inline function strPtr(s: usize): usize { return <usize>load<u32>(s, 8) }
@inline function strLen(s: usize): i32 { return load<i32>(s, 4) }
@inline function isTrue(s: usize): bool { return tagOf(s) == T_BOOL && load<i32>(s, 4) == 1 }
@inline function isFalse(s: usize): bool { return tagOf(s) == T_BOOL && load<i32>(s, 4) == 0 }
@inline function setFinite(s: usize, v: f64): void { if (isFinite<f64>(v)) setNum(s, v); else setUndef(s) }

/** Loads the image node at `node` (absolute; 0 = undefined) into slot s. */
function setNode(s: usize, node: usize): void {
  if (node == 0) { setUndef(s); return }
  const tag = load<i32>(node)
  if (tag == T_NULL) store<i32>(s, T_NULL)
  else if (tag == T_BOOL) setBool(s, load<i32>(node, 4) == 1)
  else if (tag == T_NUM) setNum(s, load<f64>(node, 4))
  else if (tag == T_STR) setStr(s, node + 8, load<i32>(node, 4))
  else { store<i32>(s, tag); store<u32>(s, <u32>node, 8) }
}

function setConst(s: usize, prog: usize, k: u32): void {
  const at = prog + <usize>load<u32>(prog + 16 + (<usize>k << 2))
  const tag = <i32>load<u8>(at)
  if (tag == T_NUM) setNum(s, load<f64>(at, 1))
  else if (tag == T_STR) setStr(s, at + 5, load<i32>(at, 1))
  else if (tag == T_BOOL) setBool(s, load<u8>(at, 1) == 1)
  else store<i32>(s, tag)
}

/** The node offset of property `id` in a (count, table) pair of the image, or 0. */
function findProperty(image: usize, header: usize, id: u32): usize {
  const count = load<u32>(image + header)
  const table = image + <usize>load<u32>(image + header + 4)
  for (let k: u32 = 0; k < count; k++) {
    const row = table + (<usize>k << 3)
    if (load<u32>(row) == id) return image + <usize>load<u32>(row, 4)
  }
  return 0
}

/** -1, 0, 1, or 2 when not comparable. */
function compare(a: usize, b: usize): i32 {
  const ta = tagOf(a), tb = tagOf(b)
  if (ta == T_NULL) return tb == T_NULL ? 0 : 2
  if (ta != tb) return 2
  if (ta == T_NUM) {
    const x = num(a), y = num(b)
    return x < y ? -1 : x > y ? 1 : 0
  }
  if (ta == T_BOOL) {
    const x = load<i32>(a, 4), y = load<i32>(b, 4)
    return x < y ? -1 : x > y ? 1 : 0
  }
  if (ta == T_STR) {
    const pa = strPtr(a), pb = strPtr(b), la = strLen(a), lb = strLen(b)
    const n = la < lb ? la : lb
    for (let i = 0; i < n; i++) {
      const ca = load<u16>(pa + (<usize>i << 1)), cb = load<u16>(pb + (<usize>i << 1))
      if (ca != cb) return ca < cb ? -1 : 1
    }
    return la < lb ? -1 : la > lb ? 1 : 0
  }
  return 2
}

function unitsEqual(p: usize, q: usize, n: i32): bool {
  return memory.compare(p, q, <usize>n << 1) == 0
}

function indexOf(s: usize, t: usize): i32 {
  const ls = strLen(s), lt = strLen(t), ps = strPtr(s), pt = strPtr(t)
  for (let i = 0; i + lt <= ls; i++) if (unitsEqual(ps + (<usize>i << 1), pt, lt)) return i
  return -1
}

/** AS_NUMBER of a string: JSON number syntax, exact fast path (≤ 15 digits, |10^e| ≤ 22) or bail. */
function asNumber(s: usize): void {
  const p = strPtr(s), n = strLen(s)
  let i = 0
  let neg = false
  if (i < n && load<u16>(p) == 45) { neg = true; i++ }
  let digits = 0
  let mant: f64 = 0
  let fracDigits = 0
  const intStart = i
  while (i < n) {
    const c = <i32>load<u16>(p + (<usize>i << 1))
    if (c < 48 || c > 57) break
    if (mant != 0 || c != 48) { digits++; mant = mant * 10 + <f64>(c - 48) }
    i++
  }
  if (i == intStart || (i - intStart > 1 && load<u16>(p + (<usize>intStart << 1)) == 48)) { setUndef(s); return }
  if (i < n && load<u16>(p + (<usize>i << 1)) == 46) {
    i++
    const fracStart = i
    while (i < n) {
      const c = <i32>load<u16>(p + (<usize>i << 1))
      if (c < 48 || c > 57) break
      if (mant != 0 || c != 48) { digits++; mant = mant * 10 + <f64>(c - 48) }
      fracDigits++
      i++
    }
    if (i == fracStart) { setUndef(s); return }
  }
  let exp = 0
  if (i < n && (load<u16>(p + (<usize>i << 1)) | 32) == 101) {
    i++
    let expNeg = false
    if (i < n) {
      const c = load<u16>(p + (<usize>i << 1))
      if (c == 43 || c == 45) { expNeg = c == 45; i++ }
    }
    const expStart = i
    while (i < n) {
      const c = <i32>load<u16>(p + (<usize>i << 1))
      if (c < 48 || c > 57) break
      if (exp < 100000) exp = exp * 10 + (c - 48)
      i++
    }
    if (i == expStart) { setUndef(s); return }
    if (expNeg) exp = -exp
  }
  if (i != n) { setUndef(s); return }
  if (mant == 0) { setNum(s, neg ? -0.0 : 0.0); return }
  if (digits > 15) { bail = true; return }
  const e10 = exp - fracDigits
  let r: f64
  if (e10 == 0) r = mant
  else if (e10 > 0 && e10 <= 22) r = mant * load<f64>(POW10 + (<usize>e10 << 3))
  else if (e10 < 0 && e10 >= -22) r = mant / load<f64>(POW10 + (<usize>(-e10) << 3))
  else { bail = true; return }
  setNum(s, neg ? -r : r)
}

/** LOWER (upper = false) or UPPER of ASCII text; non-ASCII → bail. */
function changeCase(s: usize, upper: bool): void {
  const p = strPtr(s), n = strLen(s)
  const bytes = <usize>n << 1
  if (arena + bytes > arenaEnd) { bail = true; return }
  const out = arena
  for (let i = 0; i < n; i++) {
    let c = load<u16>(p + (<usize>i << 1))
    if (c > 127) { bail = true; return }
    if (upper) { if (c >= 97 && c <= 122) c -= 32 } else if (c >= 65 && c <= 90) c += 32
    store<u16>(out + (<usize>i << 1), c)
  }
  arena += (bytes + 7) & ~7
  setStr(s, out, n)
}

/** Calls function `fn` on the argc slots from `base`; the result goes to `base`. */
function call(fn: i32, base: usize, argc: i32): void {
  const t0 = tagOf(base)
  const a1 = base + SLOT, a2 = base + 2 * SLOT
  if (fn <= 8 && fn != 2) { // one numeric argument (AS_NUMBER also takes strings)
    if (fn == 8) { if (t0 == T_STR) asNumber(base); else if (t0 != T_NUM) setUndef(base); return }
    if (t0 != T_NUM) { setUndef(base); return }
    const x = num(base)
    switch (fn) {
      case 0: setNum(base, abs<f64>(x)); return
      case 1: bail = true; return // EXP
      case 3: setFinite(base, x * x); return
      case 4: setNum(base, ceil<f64>(x)); return
      case 5: setNum(base, floor<f64>(x)); return
      case 6: setNum(base, x > 0 ? 1.0 : x < 0 ? -1.0 : x); return
      default: setFinite(base, sqrt<f64>(x)); return // 7 SQRT
    }
  }
  switch (fn) {
    case 2: // POWER
      if (t0 == T_NUM && tagOf(a1) == T_NUM) bail = true
      else setUndef(base)
      return
    case 9: setBool(base, t0 == T_ARR); return
    case 10: setBool(base, t0 == T_BOOL); return
    case 11: setBool(base, t0 != T_UNDEF); return
    case 12: setBool(base, t0 == T_NULL); return
    case 13: setBool(base, t0 == T_NUM); return
    case 14: setBool(base, t0 == T_OBJ); return
    case 15: setBool(base, t0 == T_NULL || t0 == T_BOOL || t0 == T_NUM || t0 == T_STR); return
    case 16: setBool(base, t0 == T_STR); return
    case 17: { // CONCAT
      let total = 0
      for (let k = 0; k < argc; k++) {
        const a = base + <usize>k * SLOT
        if (tagOf(a) != T_STR) { setUndef(base); return }
        total += strLen(a)
      }
      const bytes = <usize>total << 1
      if (arena + bytes > arenaEnd) { bail = true; return }
      let at = arena
      for (let k = 0; k < argc; k++) {
        const a = base + <usize>k * SLOT
        const b = <usize>strLen(a) << 1
        memory.copy(at, strPtr(a), b)
        at += b
      }
      setStr(base, arena, total)
      arena += (bytes + 7) & ~7
      return
    }
    case 18: if (t0 == T_STR) setNum(base, <f64>strLen(base)); else setUndef(base); return
    case 19: case 20: if (t0 == T_STR) changeCase(base, fn == 20); else setUndef(base); return
    case 21: { // SUBSTRING
      if (t0 != T_STR || tagOf(a1) != T_NUM || (argc > 2 && tagOf(a2) != T_NUM)) { setUndef(base); return }
      const L = <f64>strLen(base)
      const from = min<f64>(max<f64>(trunc<f64>(num(a1)), 0), L)
      const count = argc > 2 ? min<f64>(max<f64>(trunc<f64>(num(a2)), 0), L - from) : L - from
      setStr(base, strPtr(base) + (<usize><i32>from << 1), <i32>count)
      return
    }
    default: { // 22 INDEX_OF, 23 STARTS_WITH, 24 ENDS_WITH, 25 CONTAINS: two strings
      if (t0 != T_STR || tagOf(a1) != T_STR) { setUndef(base); return }
      const ls = strLen(base), lt = strLen(a1)
      if (fn == 22) { setNum(base, <f64>indexOf(base, a1)); return }
      if (fn == 25) { setBool(base, indexOf(base, a1) >= 0); return }
      if (lt > ls) { setBool(base, false); return }
      const at = fn == 23 ? 0 : ls - lt
      setBool(base, unitsEqual(strPtr(base) + (<usize>at << 1), strPtr(a1), lt))
      return
    }
  }
}

function resultCode(s: usize, out: usize): i32 {
  const tag = tagOf(s)
  if (tag == T_BOOL) return isTrue(s) ? 7 : 2
  if (tag == T_NUM) store<f64>(out, num(s))
  else if (tag == T_STR) { store<u32>(out, <u32>strPtr(s), 8); store<i32>(out, strLen(s), 12) }
  return tag
}

/** Evaluates the program at `prog` against the image at `image`; see the result codes above. */
export function routeEval(prog: usize, image: usize, work: usize, workLen: i32, out: usize): i32 {
  if (load<u32>(prog) != PROGRAM_MAGIC || <i32>load<u16>(prog, 14) > STACK_SLOTS) return ROUTE_BAD_PROGRAM
  arena = work + <usize>(STACK_SLOTS + 1) * SLOT // one spare slot: IN's scratch
  arenaEnd = work + <usize>workLen
  bail = false
  const code = prog + <usize>load<u32>(prog, 4)
  let pc = code
  let sp = work - SLOT // address of the top slot
  while (true) {
    const op = <i32>load<u8>(pc)
    pc++
    switch (op) {
      case 0: return sp < work ? ROUTE_BAD_PROGRAM : resultCode(sp, out)
      case 1: sp += SLOT; setConst(sp, prog, <u32>load<u16>(pc)); pc += 2; break
      case 2: sp += SLOT; setUndef(sp); break
      case 3: sp += SLOT; store<i32>(sp, T_NULL); break
      case 4: sp += SLOT; setBool(sp, true); break
      case 5: sp += SLOT; setBool(sp, false); break
      case 6: { // SYS, falling back to APP
        sp += SLOT
        let node = findProperty(image, 8, load<u32>(pc))
        if (node == 0) node = findProperty(image, 16, load<u32>(pc, 4))
        setNode(sp, node)
        pc += 12
        break
      }
      case 7: sp += SLOT; setNode(sp, findProperty(image, 16, load<u32>(pc))); pc += 6; break
      case 8: case 9: {
        sp += SLOT
        const off = load<u32>(image + <usize>(op == 8 ? 24 : 28))
        setNode(sp, off == 0 ? 0 : image + <usize>off)
        break
      }
      case 10: { // MEMBER
        const id = load<u32>(pc)
        pc += 6
        if (tagOf(sp) != T_OBJ) { setUndef(sp); break }
        const node = strPtr(sp)
        const count = load<u32>(node, 4)
        let child: usize = 0
        for (let k: u32 = 0; k < count; k++) {
          const row = node + 8 + (<usize>k << 3)
          if (load<u32>(row) == id) { const off = load<u32>(row, 4); child = off == 0 ? 0 : image + <usize>off; break }
        }
        setNode(sp, child)
        break
      }
      case 11: { // INDEX
        const idx = load<u32>(pc)
        pc += 4
        if (tagOf(sp) != T_ARR) { setUndef(sp); break }
        const node = strPtr(sp)
        if (idx >= load<u32>(node, 4)) { setUndef(sp); break }
        const off = load<u32>(node + 8 + (<usize>idx << 2))
        setNode(sp, off == 0 ? 0 : image + <usize>off)
        break
      }
      case 12: case 13: case 14: case 15: case 16: case 17: {
        const b = sp
        sp -= SLOT
        const c = compare(sp, b)
        if (c == 2) { setUndef(sp); break }
        let r: bool
        if (op == 12) r = c == 0
        else if (op == 13) r = c != 0
        else if (op == 14) r = c < 0
        else if (op == 15) r = c <= 0
        else if (op == 16) r = c > 0
        else r = c >= 0
        setBool(sp, r)
        break
      }
      case 18: case 19: case 20: case 21: case 22: {
        const b = sp
        sp -= SLOT
        if (tagOf(sp) != T_NUM || tagOf(b) != T_NUM) { setUndef(sp); break }
        const x = num(sp), y = num(b)
        let r: f64
        if (op == 18) r = x + y
        else if (op == 19) r = x - y
        else if (op == 20) r = x * y
        else if (op == 21) r = x / y
        else r = x % y
        setFinite(sp, r)
        break
      }
      case 23: if (tagOf(sp) == T_NUM) setNum(sp, -num(sp)); else setUndef(sp); break
      case 24:
        if (isTrue(sp)) setBool(sp, false)
        else if (isFalse(sp)) setBool(sp, true)
        else setUndef(sp)
        break
      case 25: case 26: {
        const b = sp
        sp -= SLOT
        if (op == 25) {
          if (isFalse(sp) || isFalse(b)) setBool(sp, false)
          else if (isTrue(sp) && isTrue(b)) setBool(sp, true)
          else setUndef(sp)
        } else {
          if (isTrue(sp) || isTrue(b)) setBool(sp, true)
          else if (isFalse(sp) && isFalse(b)) setBool(sp, false)
          else setUndef(sp)
        }
        break
      }
      case 27: pc = isFalse(sp) ? code + <usize>load<u32>(pc) : pc + 4; break
      case 28: pc = isTrue(sp) ? code + <usize>load<u32>(pc) : pc + 4; break
      case 29: case 30: {
        const n = <i32>load<u16>(pc)
        const t = tagOf(sp)
        const item = sp + SLOT
        if (t != T_NULL && t != T_BOOL && t != T_NUM && t != T_STR) {
          setUndef(sp)
        } else {
          let found = false
          for (let k = 0; k < n && !found; k++) {
            setConst(item, prog, <u32>load<u16>(pc + 2 + (<usize>k << 1)))
            found = compare(sp, item) == 0
          }
          setBool(sp, op == 29 ? found : !found)
        }
        pc += 2 + (<usize>n << 1)
        break
      }
      case 31: {
        const fn = <i32>load<u8>(pc), argc = <i32>load<u8>(pc, 1)
        pc += 2
        sp -= <usize>(argc - 1) * SLOT
        call(fn, sp, argc)
        if (bail) return ROUTE_BAIL
        break
      }
      default: return ROUTE_BAD_PROGRAM
    }
  }
  return ROUTE_BAD_PROGRAM
}

/** Evaluates `count` programs (addresses in the u32 table at `progs`) against one image;
 *  writes each result code (as routeEval returns) to the i32 table at `results`. */
export function routeEvalAll(progs: usize, count: i32, image: usize, work: usize, workLen: i32, results: usize, out: usize): void {
  for (let k = 0; k < count; k++) {
    store<i32>(results + (<usize>k << 2), routeEval(<usize>load<u32>(progs + (<usize>k << 2)), image, work, workLen, out))
  }
}
