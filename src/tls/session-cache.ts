// Session-id resumption for TLS 1.2 clients that do not take tickets: a bounded in-memory cache fed by
// a node:tls server's 'newSession' and read by its 'resumeSession' (Node keeps no server-side cache of
// its own). TLS 1.3 resumes through tickets only, yet OpenSSL reports its sessions here too (one per
// ticket sent, under an id no client will ask for): they are not kept, or every TLS 1.3 connection
// would push two useless entries through the cache and evict the TLS 1.2 sessions it is for.
// In memory only: a restart loses these sessions (tickets survive it; see ticket-key-store.ts).
import type tls from 'node:tls'
import { readTlv } from './der.js'
import { TICKET_LIFETIME_MS } from './ticket-key-store.js'

export const SESSION_CACHE_MAX_ENTRIES = 20_000
/** a TLS 1.2 session with an ECDSA client certificate is ~0.7 KB serialised; the byte bound is the backstop */
export const SESSION_CACHE_MAX_BYTES = 32 * 1024 * 1024
/** larger sessions (a huge client certificate) are not kept */
const MAX_SESSION_BYTES = 16 * 1024
const TLS13 = 0x0304

export interface SessionCacheOptions {
  maxEntries?: number
  maxBytes?: number
  /** as long as a ticket lives: the servers' sessionTimeout enforces the same bound */
  ttlMs?: number
  now?: () => number
}

interface Entry { data: Buffer; expiresAt: number }

export interface SessionCacheStats { stored: number; hits: number; misses: number; skipped: number; evicted: number }

/** Least recently used first out; an entry past its ttl is gone at its next look-up. */
/** One of `threads` caches' bounds: together they hold what one cache of the default bounds would. */
export function sessionCacheShare(threads: number): SessionCacheOptions {
  const n = Math.max(1, threads)
  return { maxEntries: Math.ceil(SESSION_CACHE_MAX_ENTRIES / n), maxBytes: Math.ceil(SESSION_CACHE_MAX_BYTES / n) }
}

export class SessionCache {
  readonly maxEntries: number
  readonly maxBytes: number
  readonly ttlMs: number
  readonly stats: SessionCacheStats = { stored: 0, hits: 0, misses: 0, skipped: 0, evicted: 0 }
  private readonly now: () => number
  // a Map iterates in insertion order: re-inserting on use keeps the least recently used first
  private readonly entries = new Map<string, Entry>()
  private byteCount = 0

  constructor(o: SessionCacheOptions = {}) {
    this.maxEntries = o.maxEntries ?? SESSION_CACHE_MAX_ENTRIES
    this.maxBytes = o.maxBytes ?? SESSION_CACHE_MAX_BYTES
    this.ttlMs = o.ttlMs ?? TICKET_LIFETIME_MS
    this.now = o.now ?? Date.now
  }

  get size(): number { return this.entries.size }
  get bytes(): number { return this.byteCount }

  set(id: Buffer, data: Buffer): void {
    if (id.length === 0 || data.length > MAX_SESSION_BYTES) { this.stats.skipped++; return }
    const key = id.toString('latin1')
    this.remove(key)
    this.entries.set(key, { data, expiresAt: this.now() + this.ttlMs })
    this.byteCount += data.length + key.length
    this.stats.stored++
    while (this.entries.size > this.maxEntries || this.byteCount > this.maxBytes) {
      const oldest = this.entries.keys().next()
      if (oldest.done) break
      this.remove(oldest.value)
      this.stats.evicted++
    }
  }

  get(id: Buffer): Buffer | undefined {
    const key = id.toString('latin1')
    const e = this.entries.get(key)
    if (!e || e.expiresAt <= this.now()) {
      if (e) this.remove(key)
      this.stats.misses++
      return undefined
    }
    this.entries.delete(key)
    this.entries.set(key, e)
    this.stats.hits++
    return e.data
  }

  clear(): void {
    this.entries.clear()
    this.byteCount = 0
  }

  private remove(key: string): void {
    const e = this.entries.get(key)
    if (!e) return
    this.entries.delete(key)
    this.byteCount -= e.data.length + key.length
  }
}

/** The protocol version inside a serialised OpenSSL session (SEQUENCE { INTEGER 1, INTEGER version, ... }). */
export function sessionProtocolVersion(session: Buffer): number | undefined {
  try {
    const seq = readTlv(session)
    if (seq.tag !== 0x30) return undefined
    const first = readTlv(session, seq.contentStart)
    const second = readTlv(session, first.end)
    if (first.tag !== 0x02 || second.tag !== 0x02 || second.end - second.contentStart > 2) return undefined
    return session.subarray(second.contentStart, second.end).readUIntBE(0, second.end - second.contentStart)
  } catch {
    return undefined
  }
}

/** `server` stores TLS 1.2 sessions in `cache` and resumes them by id. */
export function attachSessionCache(server: tls.Server, cache: SessionCache): void {
  server.on('newSession', (id: Buffer, data: Buffer, done: () => void) => {
    if (sessionProtocolVersion(data) === TLS13) cache.stats.skipped++
    else cache.set(id, data)
    done()
  })
  // TLS 1.3 clients send a random legacy session id: a miss, answered at once
  server.on('resumeSession', (id: Buffer, done: (err: Error | null, data: Buffer | null) => void) => {
    done(null, cache.get(id) ?? null)
  })
}
