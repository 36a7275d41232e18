// Local PKI for the hub's TLS endpoints: a self-made CA plus a server certificate it signs.
// Built with node:crypto only (no openssl CLI, no npm packages), so first start works anywhere.
// Node cannot create certificates, so the X.509 v3 DER is assembled by hand (see ./der.ts).
import { createHash, createPrivateKey, generateKeyPairSync, randomBytes, sign, X509Certificate } from 'node:crypto'
import type { KeyObject } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { join } from 'node:path'
import {
  bitString, boolean, children, explicit, implicitPrimitive, integer, namedBits, octetString, oid,
  readTlv, sequence, set, time, utf8String,
} from './der.js'

export interface KeyAndCert { keyPem: string; certPem: string }

export interface LocalPkiFiles {
  caCertFile: string
  caKeyFile: string
  serverCertFile: string
  serverKeyFile: string
  created: boolean
}

export const LOCAL_CA_COMMON_NAME = 'Hyperhub Local CA'

const HOUR = 3_600_000
const DAY = 24 * HOUR
const BACKDATE = HOUR // tolerate client clocks that run a little behind
const SERVER_LIFETIME = 825 * DAY // the maximum Apple platforms accept for TLS server certs
const RENEW_BEFORE = 30 * DAY

const OID = {
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  commonName: '2.5.4.3',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
}
// KeyUsage bit positions (RFC 5280 4.2.1.3)
const KU = { digitalSignature: 0, keyEncipherment: 2, keyCertSign: 5, cRLSign: 6 }

function newKeyPair(): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
}

/** Random positive 128-bit serial; a non-zero, high-bit-clear first byte keeps the DER INTEGER exactly 16 bytes. */
function randomSerial(): Buffer {
  const b = randomBytes(16)
  b[0] = b[0]! & 0x7f || 1
  return b
}

/** A Name of CNs (several only to test how a verifier treats an ambiguous subject). */
function nameDer(commonName: string | string[]): Buffer {
  return sequence(...[commonName].flat().map((cn) => set(sequence(oid(OID.commonName), utf8String(cn)))))
}

/** RFC 5280 4.2.1.2 method (1): SHA-1 over the subjectPublicKey BIT STRING value (without the unused-bits byte). */
function keyIdentifier(spki: Buffer): Buffer {
  const fields = children(spki, readTlv(spki))
  const bits = fields[1]
  if (!bits || bits.tag !== 0x03) throw new Error('SubjectPublicKeyInfo without a BIT STRING')
  return createHash('sha1').update(spki.subarray(bits.contentStart + 1, bits.end)).digest()
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  // DER forbids encoding DEFAULT values, so critical=FALSE is omitted rather than written
  return critical ? sequence(oid(id), boolean(true), octetString(value)) : sequence(oid(id), octetString(value))
}

interface CertParams {
  serial: Buffer
  issuer: Buffer // full Name DER; must equal the issuer's subject byte for byte
  subject: Buffer
  notBefore: Date
  notAfter: Date
  spki: Buffer
  extensions: Buffer[]
  signingKey: KeyObject
}

function buildCertificate(p: CertParams): string {
  const sigAlg = sequence(oid(OID.ecdsaWithSha256)) // ECDSA algorithm identifiers carry no parameters
  const tbs = sequence(
    explicit(0, integer(2)), // v3
    integer(p.serial),
    sigAlg,
    p.issuer,
    sequence(time(p.notBefore), time(p.notAfter)),
    p.subject,
    p.spki,
    explicit(3, sequence(...p.extensions)),
  )
  const signature = sign('sha256', tbs, p.signingKey) // DER-encoded ECDSA-Sig-Value by default
  return toPem(sequence(tbs, sigAlg, bitString(signature)))
}

function toPem(der: Buffer): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? []
  return `-----BEGIN CERTIFICATE-----\n${lines.join('\n')}\n-----END CERTIFICATE-----\n`
}

function keyPem(key: KeyObject): string {
  return key.export({ type: 'pkcs8', format: 'pem' }).toString()
}

/**
 * A CA certificate: self-signed (a root), or signed by `issuer` (an intermediate). `pathLength`: how
 * many intermediates may follow it (0: it signs leaf certificates only).
 */
export function createCertificateAuthority(commonName: string, o: { issuer?: KeyAndCert; pathLength?: number; notAfter?: Date } = {}): KeyAndCert {
  const { privateKey, publicKey } = newKeyPair()
  const spki = publicKey.export({ type: 'spki', format: 'der' })
  const name = nameDer(commonName)
  const issuerCert = o.issuer ? new X509Certificate(o.issuer.certPem) : undefined
  const issuer = issuerCert ? issuerInfo(issuerCert) : { subject: name, keyId: keyIdentifier(spki) }
  const notBefore = new Date(Date.now() - BACKDATE)
  const notAfter = o.notAfter ?? new Date(notBefore)
  if (!o.notAfter) notAfter.setUTCFullYear(notAfter.getUTCFullYear() + 10)
  const certPem = buildCertificate({
    serial: randomSerial(),
    issuer: issuer.subject,
    subject: name,
    notBefore,
    notAfter,
    spki,
    extensions: [
      extension(OID.basicConstraints, true, sequence(boolean(true), integer(o.pathLength ?? 0))),
      extension(OID.keyUsage, true, namedBits([KU.keyCertSign, KU.cRLSign])),
      ...(issuerCert ? [extension(OID.authorityKeyIdentifier, false, sequence(implicitPrimitive(0, issuer.keyId)))] : []),
      extension(OID.subjectKeyIdentifier, false, octetString(keyIdentifier(spki))),
    ],
    signingKey: o.issuer ? createPrivateKey(o.issuer.keyPem) : privateKey,
  })
  return { keyPem: keyPem(privateKey), certPem }
}

/** The CA's subject Name DER and key identifier, read from its certificate so the chain links exactly. */
function issuerInfo(caCert: X509Certificate): { subject: Buffer; keyId: Buffer } {
  const der = caCert.raw
  const tbs = children(der, readTlv(der))[0]
  if (!tbs) throw new Error('CA certificate: no tbsCertificate')
  const fields = children(der, tbs)
  const at = fields[0]?.tag === 0xa0 ? 1 : 0 // version is optional (absent means v1)
  const subjectTlv = fields[at + 4]
  if (!subjectTlv) throw new Error('CA certificate: no subject')
  const subject = der.subarray(subjectTlv.start, subjectTlv.end)
  // Prefer the CA's own SKI extension: AKI must match it, whatever method the CA used to derive it
  let keyId: Buffer | undefined
  const extsTlv = fields.find((f) => f.tag === 0xa3)
  const skiOid = oid(OID.subjectKeyIdentifier)
  for (const ext of extsTlv ? children(der, children(der, extsTlv)[0]!) : []) {
    const parts = children(der, ext)
    if (!der.subarray(parts[0]!.start, parts[0]!.end).equals(skiOid)) continue
    const outer = parts[parts.length - 1]!
    const inner = readTlv(der, outer.contentStart)
    keyId = der.subarray(inner.contentStart, inner.end)
  }
  keyId ??= keyIdentifier(caCert.publicKey.export({ type: 'spki', format: 'der' }))
  return { subject, keyId }
}

function stripZone(ip: string): string {
  return ip.split('%')[0]!
}

/** iPAddress SAN bytes: 4 for IPv4, 16 for IPv6 (expanding "::" and a trailing dotted quad). */
function ipBytes(ip: string): Buffer {
  if (isIP(ip) === 4) return Buffer.from(ip.split('.').map(Number))
  let s = stripZone(ip) // zone ids are interface-local, not part of the address
  const v4 = /^(.*:)(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(s)
  if (v4) {
    const [a, b, c, d] = v4.slice(2).map(Number) as [number, number, number, number]
    s = `${v4[1]}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const [head = '', tail] = s.split('::')
  const h = head ? head.split(':') : []
  const t = tail ? tail.split(':') : []
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t]
  if (groups.length !== 8) throw new Error(`cannot encode IPv6 address ${ip}`)
  const out = Buffer.alloc(16)
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2))
  return out
}

export function issueServerCertificate(ca: KeyAndCert, names: string[]): KeyAndCert {
  if (names.length === 0) throw new Error('issueServerCertificate: at least one name is required')
  const caCert = new X509Certificate(ca.certPem)
  const caKey = createPrivateKey(ca.keyPem)
  if (!caCert.checkPrivateKey(caKey)) throw new Error('CA private key does not match the CA certificate')
  const issuer = issuerInfo(caCert)
  const { privateKey, publicKey } = newKeyPair()
  const spki = publicKey.export({ type: 'spki', format: 'der' })
  const san = names.map((n) => {
    if (isIP(n)) return implicitPrimitive(7, ipBytes(n))
    // dNSName is IA5String: non-ASCII names would need punycode, which the caller should do
    if (!/^[\x21-\x7e]+$/.test(n)) throw new Error(`not an ASCII host name: ${JSON.stringify(n)}`)
    return implicitPrimitive(2, Buffer.from(n, 'ascii'))
  })
  const notBefore = new Date(Date.now() - BACKDATE)
  const certPem = buildCertificate({
    serial: randomSerial(),
    issuer: issuer.subject,
    subject: nameDer(names[0]!),
    notBefore,
    notAfter: new Date(notBefore.getTime() + SERVER_LIFETIME),
    spki,
    extensions: [
      extension(OID.basicConstraints, false, sequence()),
      extension(OID.keyUsage, true, namedBits([KU.digitalSignature, KU.keyEncipherment])),
      extension(OID.extKeyUsage, false, sequence(oid(OID.serverAuth))),
      extension(OID.subjectAltName, false, sequence(...san)),
      extension(OID.authorityKeyIdentifier, false, sequence(implicitPrimitive(0, issuer.keyId))),
      extension(OID.subjectKeyIdentifier, false, octetString(keyIdentifier(spki))),
    ],
    signingKey: caKey,
  })
  return { keyPem: keyPem(privateKey), certPem }
}

/**
 * A device's (or module's, `CN={device}/{module}`) client certificate: self-signed, or signed by `ca`
 * (the CA-signed form Azure's registry calls certificateAuthority). For trying X.509 devices locally
 * and for tests; `validity` moves the window (an expired certificate).
 */
export function issueDeviceCertificate(commonName: string | string[], o: { ca?: KeyAndCert; notBefore?: Date; notAfter?: Date } = {}): KeyAndCert {
  const { privateKey, publicKey } = newKeyPair()
  const spki = publicKey.export({ type: 'spki', format: 'der' })
  const subject = nameDer(commonName)
  const caCert = o.ca ? new X509Certificate(o.ca.certPem) : undefined
  const issuer = caCert ? issuerInfo(caCert) : { subject, keyId: keyIdentifier(spki) }
  const notBefore = o.notBefore ?? new Date(Date.now() - BACKDATE)
  const certPem = buildCertificate({
    serial: randomSerial(),
    issuer: issuer.subject,
    subject,
    notBefore,
    notAfter: o.notAfter ?? new Date(notBefore.getTime() + 365 * DAY),
    spki,
    extensions: [
      extension(OID.basicConstraints, false, sequence()),
      extension(OID.keyUsage, true, namedBits([KU.digitalSignature])),
      extension(OID.extKeyUsage, false, sequence(oid(OID.clientAuth))),
      extension(OID.authorityKeyIdentifier, false, sequence(implicitPrimitive(0, issuer.keyId))),
      extension(OID.subjectKeyIdentifier, false, octetString(keyIdentifier(spki))),
    ],
    signingKey: o.ca ? createPrivateKey(o.ca.keyPem) : privateKey,
  })
  return { keyPem: keyPem(privateKey), certPem }
}

// Write-then-rename so a crash never leaves a half-written PEM behind.
function writeAtomic(file: string, data: string, mode: number): void {
  const tmp = `${file}.${process.pid}.tmp`
  writeFileSync(tmp, data, { mode })
  chmodSync(tmp, mode) // the open() mode is filtered by umask; make it exact
  renameSync(tmp, file)
}

function readPair(certFile: string, keyFile: string): KeyAndCert | undefined {
  if (!existsSync(certFile) || !existsSync(keyFile)) return undefined
  return { certPem: readFileSync(certFile, 'utf8'), keyPem: readFileSync(keyFile, 'utf8') }
}

function usableCa(ca: KeyAndCert | undefined): boolean {
  if (!ca) return false
  try {
    const cert = new X509Certificate(ca.certPem)
    return cert.ca && cert.checkPrivateKey(createPrivateKey(ca.keyPem)) && Date.parse(cert.validTo) > Date.now()
  } catch {
    return false
  }
}

function usableServer(server: KeyAndCert | undefined, ca: KeyAndCert, names: string[]): boolean {
  if (!server) return false
  try {
    const cert = new X509Certificate(server.certPem)
    const caCert = new X509Certificate(ca.certPem)
    if (!cert.checkIssued(caCert) || !cert.verify(caCert.publicKey)) return false // CA was replaced
    if (!cert.checkPrivateKey(createPrivateKey(server.keyPem))) return false
    const validTo = Date.parse(cert.validTo)
    if (!(validTo - Date.now() > RENEW_BEFORE)) return false // also catches an unparseable date (NaN)
    // checkHost/checkIP match against the SAN entries, avoiding parsing the subjectAltName text
    return names.every((n) => (isIP(n) ? cert.checkIP(stripZone(n)) !== undefined : cert.checkHost(n) !== undefined))
  } catch {
    return false
  }
}

export function ensureLocalPki(dir: string, names: string[]): LocalPkiFiles {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const files = {
    caCertFile: join(dir, 'ca.pem'),
    caKeyFile: join(dir, 'ca.key'),
    serverCertFile: join(dir, 'server.pem'),
    serverKeyFile: join(dir, 'server.key'),
  }
  let created = false
  let ca = readPair(files.caCertFile, files.caKeyFile)
  if (!ca || !usableCa(ca)) {
    ca = createCertificateAuthority(LOCAL_CA_COMMON_NAME)
    writeAtomic(files.caKeyFile, ca.keyPem, 0o600)
    writeAtomic(files.caCertFile, ca.certPem, 0o644)
    created = true
  }
  if (created || !usableServer(readPair(files.serverCertFile, files.serverKeyFile), ca, names)) {
    const server = issueServerCertificate(ca, names)
    writeAtomic(files.serverKeyFile, server.keyPem, 0o600)
    writeAtomic(files.serverCertFile, server.certPem, 0o644)
    created = true
  }
  return { ...files, created }
}
