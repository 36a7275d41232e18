// Issue 17: the certificate checks under generated input. Any upload that is not a CA certificate
// (or is a damaged root) is refused with 400004 (never another error); a device certificate with any one byte changed never
// leads to a verified CA; and validity is enforced to the second either side of the dates.
import { X509Certificate } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { CertificateAuthorities, MAX_CHAIN_INTERMEDIATES } from '../src/auth/certificate-authorities.js'
import { Authenticator, DeviceAuthError } from '../src/auth/authenticator.js'
import { createDefaultPolicies } from '../src/auth/policies.js'
import { HubError } from '../src/rest/hub-error.js'
import { createCertificateAuthority, issueDeviceCertificate } from '../src/tls/local-pki.js'

const ca = createCertificateAuthority('Property Root')
const leaf = issueDeviceCertificate('prop-dev', { ca })
const leafDer = new X509Certificate(leaf.certPem).raw

function outcome(f: () => unknown): string {
  try {
    f()
    return 'accepted'
  } catch (e) {
    return e instanceof HubError ? `HubError ${e.code}` : e instanceof DeviceAuthError ? `DeviceAuthError ${e.failure}` : `other: ${(e as Error).message}`
  }
}

describe('CA certificate uploads', () => {
  it('refuses any text that is not a CA certificate with 400004', async () => {
    const pem = ca.certPem
    const mutated = fc.tuple(fc.nat({ max: pem.length - 1 }), fc.string({ minLength: 1, maxLength: 1 })).map(([at, c]) => pem.slice(0, at) + c + pem.slice(at + 1))
    await fc.assert(fc.asyncProperty(fc.oneof(fc.string({ maxLength: 400 }), mutated, fc.constant(leaf.certPem)), async (text) => {
      const store = new CertificateAuthorities([])
      const got = await store.put('p', { properties: { certificate: text } }, undefined).then(() => 'accepted', (e: unknown) => (e instanceof HubError ? `HubError ${e.code}` : `other: ${String(e)}`))
      // what is taken is a CA certificate; one that names itself as issuer must carry its own valid
      // signature (a changed byte elsewhere can leave an intermediate whose issuer is not here to check)
      if (got === 'accepted') {
        const x = new X509Certificate(text)
        expect({ ca: x.ca, selfSignedValid: !x.checkIssued(x) || x.verify(x.publicKey) }).toEqual({ ca: true, selfSignedValid: true })
      } else expect(got).toBe('HubError 400004')
    }), { numRuns: 300 })
  })
})

describe('chains to a verified CA', () => {
  const store = new CertificateAuthorities([])
  const ready = store.put('root', { properties: { certificate: ca.certPem, isVerified: true } }, undefined)

  it('never accepts a device certificate with one byte changed', async () => {
    await ready
    expect(store.verifiedIssuerOf([new X509Certificate(leaf.certPem)])?.name).toBe('root')
    fc.assert(fc.property(fc.nat({ max: leafDer.length - 1 }), fc.integer({ min: 1, max: 255 }), (at, xor) => {
      const der = Buffer.from(leafDer)
      der[at] = der[at]! ^ xor
      let cert: X509Certificate
      try {
        cert = new X509Certificate(der)
      } catch {
        return // not a certificate any more: nothing reaches the check
      }
      expect(store.verifiedIssuerOf([cert])).toBeUndefined()
    }), { numRuns: 1000 })
  })

  it(`follows at most ${MAX_CHAIN_INTERMEDIATES} intermediates a device sends`, async () => {
    const root = createCertificateAuthority('Deep Root', { pathLength: 10 })
    const deep = new CertificateAuthorities([])
    await deep.put('deep', { properties: { certificate: root.certPem, isVerified: true } }, undefined)
    const issuers = [root]
    for (let i = 0; i <= MAX_CHAIN_INTERMEDIATES; i++) issuers.push(createCertificateAuthority(`Deep ${i}`, { issuer: issuers.at(-1)!, pathLength: 10 - i - 1 }))
    const chainBelow = (depth: number) => {
      const cas = issuers.slice(1, depth + 1)
      const leafCert = new X509Certificate(issueDeviceCertificate('deep-dev', { ca: cas.at(-1)! }).certPem)
      return [leafCert, ...cas.reverse().map((c) => new X509Certificate(c.certPem))]
    }
    expect(deep.verifiedIssuerOf(chainBelow(MAX_CHAIN_INTERMEDIATES))?.name).toBe('deep')
    expect(deep.verifiedIssuerOf(chainBelow(MAX_CHAIN_INTERMEDIATES + 1))).toBeUndefined()
  })

  it('enforces the leaf\'s validity dates either side', async () => {
    await ready
    const registry = { get: (id: string) => (id === 'prop-dev' ? { deviceId: 'prop-dev', status: 'enabled', authentication: { type: 'certificateAuthority' } } : undefined) }
    const auth = new Authenticator(['localhost'], createDefaultPolicies(), registry as never, 'js')
    auth.authorities = store
    const cert = new X509Certificate(leaf.certPem)
    const from = Date.parse(cert.validFrom)
    const to = Date.parse(cert.validTo)
    fc.assert(fc.property(fc.integer({ min: -10 * 86_400_000, max: 10 * 86_400_000 }), fc.boolean(), (offset, atStart) => {
      const now = (atStart ? from : to) + offset
      const inside = from <= now && now <= to
      expect(outcome(() => auth.authenticateX509([cert], 'prop-dev', undefined, now))).toBe(inside ? 'accepted' : 'DeviceAuthError unauthorized')
    }), { numRuns: 300 })
  })
})
