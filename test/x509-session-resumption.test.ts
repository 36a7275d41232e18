// A CA-signed device behind an intermediate resumes its TLS session, on the hub's MQTT listener (on
// its I/O threads) and after a restart. A resumed session holds the device's leaf and not the chain it
// sent, so the hub completes it with the intermediates it verified before, and only for a resumed
// session: a full handshake with the leaf alone is still refused, as Azure refuses it.
import { rmSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCertificateAuthority, issueDeviceCertificate, type KeyAndCert } from '../src/tls/local-pki.js'
import { MqttTestClient } from './helpers/mqtt-test-client.js'
import { closeReasonAfter, closeCount } from './helpers/log-wait.js'
import { startTestHub, tempDir, type TestHub } from './helpers/test-hub.js'

const API = '?api-version=2021-04-12'
const dataDir = tempDir()
const logRecords: Record<string, unknown>[] = []
let t: TestHub
beforeAll(async () => { t = await startTestHub({}, { dataDir, logRecords }) })
afterAll(async () => {
  await t.stop()
  rmSync(dataDir, { recursive: true, force: true })
})

const root = createCertificateAuthority('Resume Root', { pathLength: 1 })
const issuing = createCertificateAuthority('Resume Issuing', { issuer: root })
const leaf = issueDeviceCertificate('x509-resume', { ca: issuing })
const withChain: KeyAndCert = { keyPem: leaf.keyPem, certPem: leaf.certPem + issuing.certPem }

interface Attempt { code: number; reused: boolean; session: Buffer | undefined; reason?: unknown }

/** CONNECT with no password over TLS, resuming `session` if given; the CONNACK, whether TLS resumed, the next session. */
async function connect(cert: KeyAndCert, session?: Buffer): Promise<Attempt> {
  const before = closeCount(logRecords)
  const { client, connack } = await MqttTestClient.connect({ port: t.hub.ports.mqtt, tls: { ca: t.ca, cert: cert.certPem, key: cert.keyPem, ...(session ? { session } : {}) }, clientId: 'x509-resume' })
  const reused = (client.socket as import('node:tls').TLSSocket).isSessionReused()
  const code = connack.returnCode ?? -1
  if (code === 0) {
    // the PUBACK says the device is authenticated end to end; by then the ticket has come too
    expect(await client.publish('devices/x509-resume/messages/events/', 'hello')).toBeGreaterThan(0)
  }
  client.socket.destroy()
  await client.closed
  return { code, reused, session: client.session, ...(code === 0 ? {} : { reason: await closeReasonAfter(logRecords, before) }) }
}

describe('X.509 devices and TLS session resumption', () => {
  it('a device under an intermediate resumes its session; the leaf alone on a full handshake is refused', async () => {
    expect((await t.rest('PUT', `/hyperhub/certificates/resume-root${API}`, { body: { properties: { certificate: root.certPem, isVerified: true } } })).status).toBe(201)
    await t.createDevice('x509-resume', { authentication: { type: 'certificateAuthority' } })
    const full = await connect(withChain)
    expect({ code: full.code, reused: full.reused, ticket: full.session !== undefined }).toEqual({ code: 0, reused: false, ticket: true })
    // resumed: the hub sees the leaf only, and completes the chain with the intermediate it verified
    let session = full.session
    for (let i = 0; i < 3; i++) {
      const resumed = await connect(leaf, session)
      expect({ code: resumed.code, reused: resumed.reused }).toEqual({ code: 0, reused: true })
      session = resumed.session ?? session
    }
    const leafOnly = await connect(leaf)
    expect(leafOnly).toMatchObject({ code: 5, reused: false, reason: 'connection refused: the client certificate\'s chain does not lead to a verified CA certificate of this hub' })
  })

  it('after a restart: the ticket opens with the kept keys and the chain completes with the kept intermediate', async () => {
    const first = await connect(withChain)
    expect(first.code).toBe(0)
    await t.stop()
    t = await startTestHub({}, { dataDir, logRecords })
    const resumed = await connect(leaf, first.session)
    expect({ code: resumed.code, reused: resumed.reused }).toEqual({ code: 0, reused: true })
  })

  it('a verified CA removed: a resumed session is refused like a full one', async () => {
    const first = await connect(withChain)
    expect(first.code).toBe(0)
    const etag = (await t.rest('GET', `/hyperhub/certificates/resume-root${API}`)).headers.etag as string
    expect((await t.rest('DELETE', `/hyperhub/certificates/resume-root${API}`, { headers: { 'If-Match': etag } })).status).toBe(204)
    const resumed = await connect(leaf, first.session)
    expect(resumed).toMatchObject({ code: 5, reused: true, reason: 'connection refused: the client certificate\'s chain does not lead to a verified CA certificate of this hub' })
  })
})
