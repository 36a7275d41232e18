import { describe, it, expect, vi } from 'vitest'
import { createPrivateKey, X509Certificate } from 'node:crypto'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tls from 'node:tls'
import type { AddressInfo } from 'node:net'
import { createCertificateAuthority, ensureLocalPki, issueServerCertificate } from '../src/tls/local-pki.js'
import { integer, namedBits, oid, time } from '../src/tls/der.js'

const NAMES = ['localhost', '127.0.0.1', 'myhub.local']

function withTempDir<T>(fn: (dir: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), 'local-pki-'))
  try {
    return fn(dir)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

describe('der encoder', () => {
  it('encodes the primitives X.509 relies on', () => {
    expect(oid('1.2.840.10045.4.3.2').toString('hex')).toBe('06082a8648ce3d040302')
    expect(integer(2).toString('hex')).toBe('020102')
    expect(integer(0x80).toString('hex')).toBe('02020080') // high bit set needs a 0x00 pad
    expect(integer(Buffer.from([0, 0, 0x7f])).toString('hex')).toBe('02017f') // minimal encoding
    expect(namedBits([5, 6]).toString('hex')).toBe('03020106') // keyCertSign + cRLSign
    expect(namedBits([0]).toString('hex')).toBe('03020780') // digitalSignature
    expect(time(new Date(Date.UTC(2049, 11, 31, 23, 59, 59))).toString('latin1')).toBe('\x17\x0d491231235959Z')
    expect(time(new Date(Date.UTC(2050, 0, 2, 3, 4, 5))).toString('latin1')).toBe('\x18\x0f20500102030405Z')
  })
})

describe('local PKI certificates', () => {
  const ca = createCertificateAuthority('Hyperhub Local CA')
  const server = issueServerCertificate(ca, NAMES)

  it('produces parseable certificates that chain to the CA', () => {
    const caCert = new X509Certificate(ca.certPem)
    const srvCert = new X509Certificate(server.certPem)
    expect(caCert.ca).toBe(true)
    expect(caCert.subject).toBe('CN=Hyperhub Local CA')
    expect(caCert.checkIssued(caCert)).toBe(true) // self-signed
    expect(caCert.verify(caCert.publicKey)).toBe(true)
    expect(srvCert.ca).toBe(false)
    expect(srvCert.subject).toBe('CN=localhost')
    expect(srvCert.checkIssued(caCert)).toBe(true)
    expect(srvCert.verify(caCert.publicKey)).toBe(true)
    expect(srvCert.subjectAltName).toContain('DNS:localhost')
    expect(srvCert.subjectAltName).toContain('IP Address:127.0.0.1')
    expect(srvCert.subjectAltName).toContain('DNS:myhub.local')
    expect(srvCert.checkPrivateKey(createPrivateKey(server.keyPem))).toBe(true)
    expect(srvCert.keyUsage).toContain('1.3.6.1.5.5.7.3.1') // X509Certificate.keyUsage lists extended key usages
    // backdated by an hour, ~825 days of life
    const from = Date.parse(srvCert.validFrom)
    expect(Date.now() - from).toBeGreaterThan(50 * 60_000)
    expect(Date.now() - from).toBeLessThan(70 * 60_000)
    expect(Math.round((Date.parse(srvCert.validTo) - from) / 86_400_000)).toBe(825)
    expect(server.certPem.split('\n').every((l) => l.length <= 64)).toBe(true)
    expect(server.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----/)
  })

  it('encodes IPv6 names as 16-byte iPAddress entries', () => {
    const v6 = new X509Certificate(issueServerCertificate(ca, ['hub', '::1', 'fe80::1:2', '::ffff:10.0.0.1']).certPem)
    expect(v6.checkIP('::1')).toBe('::1')
    expect(v6.checkIP('fe80::1:2')).toBe('fe80::1:2')
    expect(v6.checkIP('::ffff:10.0.0.1')).toBeDefined()
    expect(v6.checkIP('::2')).toBeUndefined()
  })

  it('is accepted by openssl verify when openssl is installed', () => {
    withTempDir((dir) => {
      writeFileSync(join(dir, 'ca.pem'), ca.certPem)
      writeFileSync(join(dir, 'server.pem'), server.certPem)
      if (existsSync('/usr/bin/openssl')) {
        const r = spawnSync('/usr/bin/openssl',
          ['verify', '-x509_strict', '-purpose', 'sslserver', '-CAfile', join(dir, 'ca.pem'), join(dir, 'server.pem')],
          { encoding: 'utf8' })
        expect(r.stderr).toBe('')
        expect(r.status).toBe(0)
      }
    })
  })

  it('works for a real TLS handshake and rejects a foreign CA', async () => {
    const srv = tls.createServer({ key: server.keyPem, cert: server.certPem }, (sock) => {
      sock.on('data', (d) => sock.end(d)) // echo
      sock.on('error', () => {})
    })
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
    const { port } = srv.address() as AddressInfo
    try {
      const exchange = (opts: tls.ConnectionOptions): Promise<{ authorized: boolean; reply: string }> =>
        new Promise((resolve, reject) => {
          const c = tls.connect({ host: '127.0.0.1', port, ...opts }, () => c.write('x'))
          c.once('data', (d) => { resolve({ authorized: c.authorized, reply: d.toString() }); c.end() })
          c.once('error', reject)
        })
      await expect(exchange({ ca: ca.certPem, servername: 'localhost' })).resolves.toEqual({ authorized: true, reply: 'x' })
      // no servername: Node verifies the connect host, so the IP SAN must match
      await expect(exchange({ ca: ca.certPem })).resolves.toEqual({ authorized: true, reply: 'x' })
      // a name not in the SAN is refused even with the right CA
      await expect(exchange({ ca: ca.certPem, servername: 'other.example' })).rejects.toMatchObject({ code: 'ERR_TLS_CERT_ALTNAME_INVALID' })
      const foreign = createCertificateAuthority('Hyperhub Local CA') // same name, different key
      await expect(exchange({ ca: foreign.certPem, servername: 'localhost' })).rejects.toMatchObject({
        code: expect.stringMatching(/UNABLE_TO_VERIFY_LEAF_SIGNATURE|CERT_SIGNATURE_FAILURE|UNABLE_TO_GET_ISSUER_CERT/),
      })
    } finally {
      await new Promise((resolve) => srv.close(resolve))
    }
  })
})

describe('ensureLocalPki', () => {
  it('creates once, reuses, and re-issues the server cert when names change', () => {
    withTempDir((root) => {
      const dir = join(root, 'pki')
      const first = ensureLocalPki(dir, NAMES)
      expect(first.created).toBe(true)
      for (const f of [first.caCertFile, first.caKeyFile, first.serverCertFile, first.serverKeyFile]) expect(existsSync(f)).toBe(true)
      expect(statSync(first.caKeyFile).mode & 0o777).toBe(0o600)
      expect(statSync(first.serverKeyFile).mode & 0o777).toBe(0o600)
      const snapshot = (): string[] => [first.caCertFile, first.caKeyFile, first.serverCertFile, first.serverKeyFile]
        .map((f) => readFileSync(f, 'utf8'))
      const before = snapshot()
      const caCert = new X509Certificate(before[0]!)
      expect(new X509Certificate(before[2]!).checkIssued(caCert)).toBe(true)

      const second = ensureLocalPki(dir, NAMES)
      expect(second.created).toBe(false)
      expect(snapshot()).toEqual(before)

      const third = ensureLocalPki(dir, [...NAMES, 'extra.example'])
      expect(third.created).toBe(true)
      const after = snapshot()
      expect(after[0]).toBe(before[0]) // CA cert untouched
      expect(after[1]).toBe(before[1]) // CA key untouched
      expect(after[2]).not.toBe(before[2])
      const reissued = new X509Certificate(after[2]!)
      expect(reissued.subjectAltName).toContain('DNS:extra.example')
      expect(reissued.checkIssued(caCert)).toBe(true)
      expect(reissued.verify(caCert.publicKey)).toBe(true)
    })
  })

  it('re-issues a server cert that expires within 30 days or is not from the current CA', () => {
    withTempDir((dir) => {
      const files = ensureLocalPki(dir, NAMES)
      // replace the server cert with one from another CA: must be detected and replaced
      const other = createCertificateAuthority('Someone Else')
      const stray = issueServerCertificate(other, NAMES)
      writeFileSync(files.serverCertFile, stray.certPem)
      writeFileSync(files.serverKeyFile, stray.keyPem)
      expect(ensureLocalPki(dir, NAMES).created).toBe(true)
      const caCert = new X509Certificate(readFileSync(files.caCertFile, 'utf8'))
      expect(new X509Certificate(readFileSync(files.serverCertFile, 'utf8')).verify(caCert.publicKey)).toBe(true)
      // 29 days before expiry (clock moved forward): renewed, CA kept
      const serverPem = readFileSync(files.serverCertFile, 'utf8')
      const validTo = Date.parse(new X509Certificate(serverPem).validTo)
      vi.useFakeTimers({ toFake: ['Date'] })
      try {
        vi.setSystemTime(validTo - 31 * 86_400_000)
        expect(ensureLocalPki(dir, NAMES).created).toBe(false)
        vi.setSystemTime(validTo - 29 * 86_400_000)
        expect(ensureLocalPki(dir, NAMES).created).toBe(true)
      } finally {
        vi.useRealTimers()
      }
      const renewed = new X509Certificate(readFileSync(files.serverCertFile, 'utf8'))
      expect(Date.parse(renewed.validTo)).toBeGreaterThan(validTo)
      expect(new X509Certificate(readFileSync(files.caCertFile, 'utf8')).fingerprint256).toBe(caCert.fingerprint256)
      // a missing server key forces re-issue too
      rmSync(files.serverKeyFile)
      expect(ensureLocalPki(dir, NAMES).created).toBe(true)
      expect(statSync(files.serverKeyFile).mode & 0o777).toBe(0o600)
    })
  })
})
