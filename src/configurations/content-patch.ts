// A configuration's content paths as one desired-properties patch (`properties.desired.a.b` → `{a: {b: …}}`).
// The paths were checked name by name when the configuration was stored (configuration-store.ts), so
// no name reaches an object's prototype; a path naming `__proto__` is skipped all the same.
type Json = Record<string, unknown>

export function contentPatch(content: Json): Json {
  const patch: Json = {}
  for (const [path, value] of Object.entries(content)) {
    const names = path.split('.').slice(2)
    if (names.includes('__proto__')) continue
    if (names.length === 0) { Object.assign(patch, value as Json); continue }
    let at = patch
    for (const name of names.slice(0, -1)) {
      const inner = Object.hasOwn(at, name) ? at[name] : undefined
      at = (at[name] = typeof inner === 'object' && inner !== null && !Array.isArray(inner) ? inner : {}) as Json
    }
    at[names.at(-1)!] = value
  }
  return patch
}
