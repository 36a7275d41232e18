// The session and the hub's REST API from the browser. The session lives in sessionStorage only (gone
// with the tab; never in localStorage, a URL or the console). The hub words a 401 differently for a
// credential it does not accept (a bad signature, an unknown policy, an expired token) and for one
// that lacks a right (`… does not allow access for 'RegistryWrite'`, `… is not authorized for …`):
// the first logs out (on the first call after logging in: the login was refused), the second is a
// valid login whose pages show the hub's refusal for what it cannot do.
import { serviceToken } from './sas.js'

const KEY = 'hyperhub.session'
const API_VERSION = '2021-04-12'

/** `{ kind: 'sas', hostName, keyName, key }` or `{ kind: 'bearer', token }`, and whether a call has succeeded with it. */
export function currentSession() {
  try { return JSON.parse(sessionStorage.getItem(KEY) ?? 'null') } catch { return null }
}

let cached = null
const listeners = new Set()

export function logIn(session) {
  cached = null
  sessionStorage.setItem(KEY, JSON.stringify({ ...session, verified: false }))
}

export function logOut(reason) {
  cached = null
  sessionStorage.removeItem(KEY)
  if (reason) sessionStorage.setItem(`${KEY}.refused`, reason)
  else sessionStorage.removeItem(`${KEY}.refused`)
  for (const f of listeners) f()
}

/** Why the last login was refused (read once). */
export function takeRefusal() {
  const r = sessionStorage.getItem(`${KEY}.refused`)
  sessionStorage.removeItem(`${KEY}.refused`)
  return r
}

/** Called after logOut (the app goes back to the login page). */
export function onLoggedOut(f) { listeners.add(f) }

/** The Authorization header: a SAS token made here (renewed 5 minutes before it expires) or the bearer token. */
export async function authorization() {
  const s = currentSession()
  if (!s) throw new Error('not logged in')
  if (s.kind === 'bearer') return `Bearer ${s.token}`
  if (!cached || cached.expiresAt - Date.now() < 300_000) cached = await serviceToken(s)
  return cached.token
}

/** How long a stream's token lasts; a test may shorten it (sessionStorage, seconds). */
const STREAM_TOKEN_SECONDS = 600
export const STREAM_TOKEN_SECONDS_KEY = 'hyperhub.streamTokenSeconds'

/**
 * A SAS token of its own for one event stream connection, `{ token, expiresAt }` (the stream takes
 * no bearer tokens: null then). Short-lived, and not the REST token: the hub closes a stream when its
 * token expires, so the page opens a new one before that.
 */
export async function streamToken() {
  const s = currentSession()
  if (s?.kind !== 'sas') return null
  const ttl = Number(sessionStorage.getItem(STREAM_TOKEN_SECONDS_KEY)) || STREAM_TOKEN_SECONDS
  return serviceToken(s, ttl)
}

/** The hub's 401 texts for a valid credential without the right a call needs (src/auth/authenticator.ts). */
const MISSING_RIGHT = /does not allow access for|is not authorized for|accepts shared access signatures only/
/** …and for an expired token (a SAS token's, a bearer token's). */
const EXPIRED = /\btoken (?:is )?expired\b/

const messageOf = (res) => (typeof res.body?.Message === 'string' ? res.body.Message : '')

/** A 401 saying the credential is good but lacks the right for this call. */
export function refusedForRights(res) {
  return res.status === 401 && MISSING_RIGHT.test(messageOf(res))
}

/** Azure's error body `{"Message":"ErrorCode:Name;text"}` as "404 DeviceNotOnline: text". */
export function errorText(res) {
  const m = typeof res.body?.Message === 'string' ? /^ErrorCode:([^;]*);([\s\S]*)$/.exec(res.body.Message) : null
  if (m) return `${res.status} ${m[1]}: ${m[2]}`
  const text = typeof res.body === 'string' ? res.body : JSON.stringify(res.body ?? '')
  return `${res.status}${text ? `: ${text.slice(0, 300)}` : ''}`
}

/**
 * Calls the hub: `{ ok, status, headers, body }` (body parsed when JSON). Network failures resolve
 * with status 0 and the reason, so callers show one kind of result.
 */
export async function api(method, path, { body, raw, headers = {} } = {}) {
  const url = new URL(path, location.origin)
  if (!url.searchParams.has('api-version')) url.searchParams.set('api-version', API_VERSION)
  let res
  try {
    const h = { Authorization: await authorization(), ...headers }
    if (body !== undefined) h['Content-Type'] = 'application/json'
    res = await fetch(url, { method, headers: h, body: body !== undefined ? JSON.stringify(body) : raw, cache: 'no-store' })
  } catch (e) {
    return { ok: false, status: 0, headers: new Headers(), body: { Message: `ErrorCode:NetworkError;${e.message}` } }
  }
  const text = await res.text()
  let parsed = text
  if ((res.headers.get('content-type') ?? '').includes('json') && text !== '') {
    try { parsed = JSON.parse(text) } catch { /* shown as text */ }
  }
  const out = { ok: res.ok, status: res.status, headers: res.headers, body: parsed }
  const s = currentSession()
  if (!s) return out
  if (res.status === 401 && !refusedForRights(out)) {
    if (!s.verified) logOut(`The hub refused these credentials: ${errorText(out)}`)
    // a bearer token runs out (the page signs SAS tokens itself, renewed before they expire)
    else if (EXPIRED.test(messageOf(out))) logOut('Your token expired; log in again')
    else logOut(`The hub no longer accepts these credentials: ${errorText(out)}`)
  } else if (!s.verified && (res.ok || res.status === 401)) {
    sessionStorage.setItem(KEY, JSON.stringify({ ...s, verified: true }))
  }
  return out
}

/**
 * A device id a URL path cannot hold: a browser drops `.` and `..` path segments, `%2E` and `%2e`
 * encoded ones too (WHATWG URL), so `/twins/..` would reach `/`. The pages reach such a device
 * through the APIs that take its id in the body: the query, and bulk registry operations.
 */
export const unaddressable = (id) => id === '.' || id === '..'

/** `id` as a URL path segment; throws for an id no URL path can hold (see unaddressable). */
export function segment(id) {
  if (unaddressable(id)) throw new Error(`the device id ${JSON.stringify(id)} cannot be put in a URL path`)
  return encodeURIComponent(id)
}

const BULK_STATUS = { PreconditionFailed: 412, DeviceNotFound: 404, DeviceAlreadyExists: 409 }

/**
 * One bulk registry operation (`POST /devices`, an ExportImportDevice item), answered like any call:
 * the item's refusal becomes `{ ok: false, status, body: { Message } }`.
 */
export async function bulkOne(item) {
  const r = await api('POST', '/devices', { body: [item] })
  if (!r.ok || r.body?.isSuccessful) return r
  const e = r.body?.errors?.[0] ?? {}
  return { ok: false, status: BULK_STATUS[e.errorCode] ?? 400, headers: r.headers, body: { Message: `ErrorCode:${e.errorCode ?? 'Error'};${e.errorStatus ?? ''}` } }
}
