// CA certificates uploaded to the hub for CA-signed X.509 devices (auth.md "X.509"): at most 25,
// each verified by proof of possession (the hub issues a code; a certificate whose CN is that code,
// signed by the CA's key, proves it) or marked verified on upload. A device whose certificate chain
// leads to a verified CA, and whose leaf's CN is its device id, connects with no key.
import { randomBytes, X509Certificate, createHash } from 'node:crypto'
import { HubError } from '../rest/hub-error.js'
import { SerializedChanges } from '../registry/serialized-changes.js'
import { pathLengthConstraint } from '../tls/certificate-extensions.js'
import type { PresentedChain } from '../tls/peer-chain.js'
import type { LearnedIntermediates } from './learned-intermediates.js'

export const MAX_CA_CERTIFICATES = 25
/** Intermediates a device may present between its leaf and a verified CA. */
export const MAX_CHAIN_INTERMEDIATES = 4
const NAME = /^[A-Za-z0-9._-]{1,64}$/
const MAX_PEM_BYTES = 16 * 1024

export interface StoredCertificate {
  name: string
  pem: string
  isVerified: boolean
  /** issued by generateVerificationCode, cleared once verified */
  verificationCode?: string
  etag: string
  created: string
  updated: string
}

/** A certificate as ARM's CertificateDescription shows it. */
export function certificateJson(c: StoredCertificate): Record<string, unknown> {
  const x = new X509Certificate(c.pem)
  return {
    name: c.name, etag: c.etag, type: 'Microsoft.Devices/IotHubs/Certificates',
    properties: {
      subject: commonName(x) ?? x.subject, expiry: new Date(x.validTo).toUTCString(), thumbprint: thumbprintOf(x),
      isVerified: c.isVerified, created: c.created, updated: c.updated, certificate: c.pem,
      ...(c.verificationCode ? { verificationCode: c.verificationCode } : {}),
    },
  }
}

export function thumbprintOf(x: X509Certificate): string {
  return createHash('sha1').update(x.raw).digest('hex').toUpperCase()
}

/** The subject's CN, unescaped; undefined when it has none, or more than one (which would be ambiguous). */
export function commonName(x: X509Certificate): string | undefined {
  const cn = (x.toLegacyObject().subject as Record<string, string | string[]> | undefined)?.CN
  return typeof cn === 'string' ? cn : undefined
}

const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2'
const ANY_EXTENDED_KEY_USAGE = '2.5.29.37.0'

/** A certificate without an extended key usage may authenticate a client; one with it must name clientAuth. */
function allowsClientAuth(x: X509Certificate): boolean {
  const usages = x.keyUsage as string[] | undefined
  return usages === undefined || usages.includes(CLIENT_AUTH) || usages.includes(ANY_EXTENDED_KEY_USAGE)
}

/**
 * A path leaf first, the verified CA last: every certificate may authenticate a client, and no CA has
 * more intermediates below it than its path length allows.
 */
function pathAllowed(path: readonly X509Certificate[]): boolean {
  if (!path.every(allowsClientAuth)) return false
  return path.every((c, k) => {
    if (k === 0) return true
    const limit = pathLengthConstraint(c)
    return limit === undefined || k - 1 <= limit
  })
}

function parsePem(value: unknown, field: string): X509Certificate {
  if (typeof value !== 'string' || value.length === 0) throw new HubError(400004, `${field} must be a PEM certificate`)
  if (value.length > MAX_PEM_BYTES) throw new HubError(400004, `${field} is longer than ${MAX_PEM_BYTES} bytes`)
  // Azure takes the PEM text or its base64 body alone
  const pem = value.includes('-----BEGIN') ? value : `-----BEGIN CERTIFICATE-----\n${value.replace(/\s+/g, '')}\n-----END CERTIFICATE-----\n`
  try {
    return new X509Certificate(pem)
  } catch {
    throw new HubError(400004, `${field} is not a certificate that parses (PEM or its base64 body)`)
  }
}

/** Whether `nowMs` lies within the certificate's validity dates; a date that does not parse fails closed. */
export function inDate(x: X509Certificate, nowMs: number): boolean {
  const from = Date.parse(x.validFrom)
  const to = Date.parse(x.validTo)
  return from <= nowMs && nowMs <= to
}

/** Whether `child` was issued by `parent`: names and key identifiers link, and the parent's key signed it. */
function signedBy(child: X509Certificate, parent: X509Certificate): boolean {
  return parent.ca && child.checkIssued(parent) && child.verify(parent.publicKey)
}

export class CertificateAuthorities {
  private readonly byName = new Map<string, StoredCertificate>()
  /** parsed once: chains are checked at every X.509 connect */
  private readonly parsed = new Map<string, X509Certificate>()
  /** one change at a time: each reads the state the previous one committed */
  private readonly changes = new SerializedChanges()
  private readonly listeners: ((name: string) => void)[] = []
  /** intermediates from chains that verified, for devices whose resumed TLS session carries only their leaf */
  intermediates: LearnedIntermediates | undefined

  constructor(stored: readonly StoredCertificate[], private readonly save: (all: StoredCertificate[]) => Promise<void> = async () => {}) {
    for (const c of stored) this.remember(c)
  }

  list(): StoredCertificate[] { return [...this.byName.values()] }

  /**
   * Called after a committed change that can revoke (a CA deleted, replaced by another certificate,
   * or no longer verified), with its name: connections whose chain led to it are checked again.
   */
  onRevoke(listener: (name: string) => void): void { this.listeners.push(listener) }

  get(name: string): StoredCertificate {
    const c = this.byName.get(name)
    if (!c) throw new HubError(404000, `certificate '${name}' does not exist`)
    return c
  }

  /** Uploads a CA certificate (or replaces one, given its etag). `isVerified: true` is Azure's "verified on upload". */
  put(name: string, body: unknown, ifMatch: string | undefined): Promise<{ cert: StoredCertificate; created: boolean }> {
    return this.serially(async () => {
      if (!NAME.test(name)) throw new HubError(400004, `certificate name '${name}' must be 1 to 64 letters, digits, '.', '_' or '-'`)
      const props = (body as { properties?: { certificate?: unknown; isVerified?: unknown } } | null)?.properties
      const x = parsePem(props?.certificate, 'properties.certificate')
      if (!x.ca) throw new HubError(400004, 'properties.certificate is not a CA certificate (its basic constraints must say CA:TRUE)')
      // a root signs itself: a signature that does not verify is a damaged certificate
      if (x.checkIssued(x) && !x.verify(x.publicKey)) throw new HubError(400004, 'properties.certificate is self-issued but its signature does not verify')
      if (props?.isVerified !== undefined && typeof props.isVerified !== 'boolean') throw new HubError(400004, 'properties.isVerified must be true or false')
      const old = this.byName.get(name)
      this.checkEtag(old, ifMatch)
      if (!old && this.byName.size >= MAX_CA_CERTIFICATES) throw new HubError(400004, `a hub holds at most ${MAX_CA_CERTIFICATES} CA certificates`)
      const now = new Date().toUTCString()
      const cert: StoredCertificate = {
        name, pem: x.toString(), isVerified: props?.isVerified === true, etag: randomBytes(8).toString('base64url'),
        created: old && old.pem === x.toString() ? old.created : now, updated: now,
      }
      await this.commit(name, cert)
      return { cert, created: !old }
    })
  }

  /** Issues the code a proof-of-possession certificate must carry as its CN. */
  generateVerificationCode(name: string, ifMatch: string | undefined): Promise<StoredCertificate> {
    return this.serially(async () => {
      const old = this.get(name)
      this.checkEtag(old, ifMatch, true)
      const cert = { ...old, verificationCode: randomBytes(24).toString('hex').toUpperCase(), etag: randomBytes(8).toString('base64url'), updated: new Date().toUTCString() }
      await this.commit(name, cert)
      return cert
    })
  }

  /** Proof of possession: a certificate whose CN is the issued code, signed by the CA's key, verifies the CA. */
  verify(name: string, body: unknown, ifMatch: string | undefined, nowMs = Date.now()): Promise<StoredCertificate> {
    return this.serially(async () => {
      const old = this.get(name)
      this.checkEtag(old, ifMatch, true)
      if (!old.verificationCode) throw new HubError(400004, `certificate '${name}' has no verification code: generate one first`)
      const proof = parsePem((body as { certificate?: unknown } | null)?.certificate, 'certificate')
      if (commonName(proof) !== old.verificationCode) throw new HubError(400004, 'the proof certificate\'s CN is not the verification code')
      if (!signedBy(proof, this.parsed.get(name)!)) throw new HubError(400004, `the proof certificate is not signed by certificate '${name}'`)
      if (!inDate(proof, nowMs)) throw new HubError(400004, 'the proof certificate is expired or not yet valid')
      const { verificationCode: _used, ...rest } = old
      const cert = { ...rest, isVerified: true, etag: randomBytes(8).toString('base64url'), updated: new Date().toUTCString() }
      await this.commit(name, cert)
      return cert
    })
  }

  delete(name: string, ifMatch: string | undefined): Promise<void> {
    return this.serially(async () => {
      this.checkEtag(this.get(name), ifMatch, true)
      await this.commit(name, undefined)
    })
  }

  /**
   * The verified CA a device's chain (leaf first, then what it sent) leads to, or undefined. Every
   * link must be signed by the next, every certificate in date and fit to authenticate a client,
   * intermediates must be CAs, and no CA's path length may be exceeded.
   */
  verifiedIssuerOf(chain: readonly X509Certificate[], nowMs = Date.now()): StoredCertificate | undefined {
    return this.verifiedPath(chain, nowMs)?.issuer
  }

  /**
   * The verified CA and the path to it (leaf, then the intermediates used). A chain from a resumed
   * TLS session (only its leaf) may be completed with intermediates learned from chains that verified.
   */
  verifiedPath(chain: PresentedChain | readonly X509Certificate[], nowMs = Date.now()): { issuer: StoredCertificate; path: X509Certificate[] } | undefined {
    const leaf = chain[0]
    if (!leaf || !inDate(leaf, nowMs)) return undefined
    const offered = chain.slice(1, 1 + MAX_CHAIN_INTERMEDIATES)
    const path = [leaf]
    for (;;) {
      const current = path[path.length - 1]!
      for (const c of this.byName.values()) {
        const ca = this.parsed.get(c.name)!
        if (c.isVerified && inDate(ca, nowMs) && signedBy(current, ca) && pathAllowed([...path, ca])) {
          // what the device sent and verified is kept for its resumed sessions, which carry no chain
          // (and what a resumed session used is kept longest)
          if (path.length > 1) this.intermediates?.learn(path.slice(1))
          return { issuer: c, path }
        }
      }
      if (path.length > MAX_CHAIN_INTERMEDIATES) return undefined
      const fits = (p: X509Certificate) => !path.some((q) => q.fingerprint256 === p.fingerprint256) && signedBy(current, p) && inDate(p, nowMs)
      let next = offered.find(fits)
      if (!next && this.intermediates && (chain as PresentedChain).fromResumedSession) {
        next = this.intermediates.candidatesFor(current).find(fits)
      }
      if (!next) return undefined
      path.push(next)
    }
  }

  private checkEtag(old: StoredCertificate | undefined, ifMatch: string | undefined, required = false): void {
    if (required && ifMatch === undefined) throw new HubError(412001, 'If-Match with the certificate\'s etag is required')
    if (ifMatch === undefined || ifMatch === '*') return
    if (!old || ifMatch.replace(/^"|"$/g, '') !== old.etag) throw new HubError(412001, 'the etag does not match the certificate\'s')
  }

  private remember(c: StoredCertificate): void {
    this.byName.set(c.name, c)
    this.parsed.set(c.name, new X509Certificate(c.pem))
  }

  private async commit(name: string, cert: StoredCertificate | undefined): Promise<void> {
    const old = this.byName.get(name)
    const revokes = old !== undefined && old.isVerified && (!cert || cert.pem !== old.pem || !cert.isVerified)
    const next = this.list().filter((c) => c.name !== name)
    if (cert) next.push(cert)
    await this.save(next) // stored first: a failed write leaves the certificates as they were
    if (cert) this.remember(cert)
    else {
      this.byName.delete(name)
      this.parsed.delete(name)
    }
    if (revokes) for (const l of this.listeners) l(name)
  }

  private serially<T>(work: () => Promise<T>): Promise<T> {
    return this.changes.run('all', work)
  }
}
