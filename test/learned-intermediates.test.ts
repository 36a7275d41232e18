// The intermediates kept for resumed sessions: bounded (the oldest goes), stored only when the set
// changes, and a failed store is reported, not thrown into the connection that taught them.
import { X509Certificate } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { LearnedIntermediates } from '../src/auth/learned-intermediates.js'
import { createCertificateAuthority } from '../src/tls/local-pki.js'

const root = createCertificateAuthority('Learned Root', { pathLength: 2 })
const intermediates = Array.from({ length: 4 }, (_, i) => new X509Certificate(createCertificateAuthority(`Learned ${i}`, { issuer: root }).certPem))

describe('LearnedIntermediates', () => {
  it('keeps at most its bound, dropping the oldest, and stores only on a change', async () => {
    const saved: string[][] = []
    const kept = new LearnedIntermediates([], async (pems) => { saved.push(pems) }, (e) => { throw e }, 3)
    kept.learn(intermediates.slice(0, 2))
    kept.learn(intermediates.slice(0, 2))
    expect(saved).toHaveLength(1)
    kept.learn(intermediates.slice(2, 4))
    expect(kept.size).toBe(3)
    expect(saved.at(-1)!.map((p) => new X509Certificate(p).subject)).toEqual(intermediates.slice(1).map((x) => x.subject))
    // a child names its candidates by issuer: the dropped one is gone, a kept one is there
    const childOf = (x: X509Certificate) => ({ issuer: x.subject }) as X509Certificate
    expect(kept.candidatesFor(childOf(intermediates[0]!))).toEqual([])
    expect(kept.candidatesFor(childOf(intermediates[3]!)).map((x) => x.subject)).toEqual([intermediates[3]!.subject])
    // reloaded from what was stored
    expect(new LearnedIntermediates(saved.at(-1)!, async () => {}, () => {}, 3).size).toBe(3)
  })

  it('one seen again goes last: the bound drops the least recently seen', async () => {
    const kept = new LearnedIntermediates([], async () => {}, (e) => { throw e }, 2)
    kept.learn([intermediates[0]!])
    kept.learn([intermediates[1]!])
    kept.learn([intermediates[0]!])
    kept.learn([intermediates[2]!])
    const childOf = (x: X509Certificate) => ({ issuer: x.subject }) as X509Certificate
    expect(kept.candidatesFor(childOf(intermediates[0]!))).toHaveLength(1)
    expect(kept.candidatesFor(childOf(intermediates[1]!))).toEqual([])
  })

  it('a store that fails is reported', async () => {
    let reported!: (e: unknown) => void
    const failure = new Promise<unknown>((resolve) => { reported = resolve })
    const kept = new LearnedIntermediates([], () => Promise.reject(new Error('disk full')), (e) => reported(e))
    kept.learn([intermediates[0]!])
    expect(((await failure) as Error).message).toBe('disk full')
  })
})
