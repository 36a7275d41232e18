// Intermediate CA certificates the hub has seen on a device's chain that led to a verified CA, kept
// so that a device whose TLS session resumes still authenticates. A resumed session carries the
// client's leaf certificate but not the chain it sent (OpenSSL stores no peer chain in a session or
// ticket), so a device signed by an intermediate would otherwise be refused until its ticket expired.
// Only certificates from a chain that verified are kept (an attacker cannot plant one: it would have
// to be signed, link by link, up to a verified CA), they are public, and they are still checked at
// every use (signature, dates, path length) as if the device had sent them. Bounded; kept in the
// store so that tickets issued before a restart resume too.
import { X509Certificate, createHash } from 'node:crypto'

export const MAX_LEARNED_INTERMEDIATES = 1000

export class LearnedIntermediates {
  /** by subject name: a child's issuer names its candidates, so a lookup verifies no unrelated signature */
  private readonly bySubject = new Map<string, X509Certificate[]>()
  /** by SHA-256 of the DER, least recently learned or used first: the bound drops that one */
  private readonly byThumbprint = new Map<string, X509Certificate>()

  constructor(pems: readonly string[], private readonly save: (pems: string[]) => Promise<void>, private readonly saveFailed: (e: unknown) => void,
    private readonly max = MAX_LEARNED_INTERMEDIATES) {
    for (const pem of pems.slice(-max)) {
      try { this.add(new X509Certificate(pem)) } catch { /* an unreadable entry is skipped; it is relearned */ }
    }
  }

  get size(): number { return this.byThumbprint.size }

  /** Kept certificates whose subject is `child`'s issuer (not yet checked for a signature). */
  candidatesFor(child: X509Certificate): readonly X509Certificate[] {
    return this.bySubject.get(child.issuer) ?? []
  }

  /** Keeps the intermediates of a chain that verified; stores the set when it changed (a hint: a failed write is reported, not thrown). */
  learn(intermediates: readonly X509Certificate[]): void {
    let changed = false
    for (const x of intermediates) changed = this.add(x) || changed
    if (!changed) return
    this.save([...this.byThumbprint.values()].map((x) => x.toString())).catch(this.saveFailed)
  }

  private add(x: X509Certificate): boolean {
    const thumbprint = createHash('sha256').update(x.raw).digest('hex')
    const known = this.byThumbprint.get(thumbprint)
    if (known) {
      // seen again: it moves to the newest end, so a fleet in use is not the first to go
      this.byThumbprint.delete(thumbprint)
      this.byThumbprint.set(thumbprint, known)
      return false
    }
    if (this.byThumbprint.size >= this.max) {
      const [oldestKey, oldest] = this.byThumbprint.entries().next().value as [string, X509Certificate]
      this.byThumbprint.delete(oldestKey)
      const siblings = (this.bySubject.get(oldest.subject) ?? []).filter((c) => c !== oldest)
      if (siblings.length === 0) this.bySubject.delete(oldest.subject)
      else this.bySubject.set(oldest.subject, siblings)
    }
    this.byThumbprint.set(thumbprint, x)
    this.bySubject.set(x.subject, [...(this.bySubject.get(x.subject) ?? []), x])
    return true
  }
}
