// Issue 17 item 2: CA certificates on the control plane and CA-signed devices. A CA is verified by
// proof of possession (or on upload); then a device whose chain leads to it, with its id as CN,
// connects over MQTT/TLS with no key. Every refusal is exact, and what is committed survives a restart.
import { closeCount, closeReasonAfter, logged } from './helpers/log-wait.js'
import { rmSync } from 'node:fs'
import { X509Certificate } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCertificateAuthority, issueDeviceCertificate, issueServerCertificate, type KeyAndCert } from '../src/tls/local-pki.js'
import { MAX_CA_CERTIFICATES } from '../src/auth/certificate-authorities.js'
import { MqttTestClient } from './helpers/mqtt-test-client.js'
import rhea from 'rhea'
import { closeError, next } from './helpers/amqp-client.js'
import { startTestHub, tempDir, type TestHub } from './helpers/test-hub.js'

const API = '?api-version=2021-04-12'
let t: TestHub
let dataDir: string
const logRecords: Record<string, unknown>[] = []
beforeAll(async () => {
  dataDir = tempDir()
  t = await startTestHub({}, { dataDir, logRecords })
})
afterAll(async () => {
  await t.stop()
  rmSync(dataDir, { recursive: true, force: true })
})

const fleet = createCertificateAuthority('Fleet Root')
const fleetLeaf = issueDeviceCertificate('ca-dev', { ca: fleet })
const errorOf = (r: { status: number; body: any }) => ({ status: r.status, message: r.body?.Message?.replace(/^ErrorCode:\w+;/, '') })
const upload = (name: string, ca: KeyAndCert, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}) =>
  t.rest('PUT', `/hyperhub/certificates/${name}${API}`, { body: { properties: { certificate: ca.certPem, ...extra } }, headers })

/** CONNECT over TLS with a client certificate and no password: the CONNACK code, and why the hub refused. */
async function connectWith(deviceId: string, cert: KeyAndCert): Promise<{ code: number; reason?: unknown }> {
  const before = closeCount(logRecords)
  const { client, connack } = await MqttTestClient.connect({ port: t.hub.ports.mqtt, tls: { ca: t.ca, cert: cert.certPem, key: cert.keyPem }, clientId: deviceId })
  client.socket.destroy()
  return connack.returnCode === 0 ? { code: 0 } : { code: connack.returnCode ?? -1, reason: await closeReasonAfter(logRecords, before) }
}

describe('CA certificates', () => {
  it('verifies a CA by proof of possession, then its devices connect with their certificate alone', async () => {
    const ca = fleet
    const up = await upload('fleet', ca)
    expect(up.status).toBe(201)
    expect(up.body.properties).toMatchObject({ subject: 'Fleet Root', isVerified: false })
    await t.createDevice('ca-dev', { authentication: { type: 'certificateAuthority' } })
    const leaf = fleetLeaf
    // not verified yet: refused
    expect(await connectWith('ca-dev', leaf)).toEqual({ code: 5, reason: 'connection refused: the client certificate\'s chain does not lead to a verified CA certificate of this hub' })

    const code = await t.rest('POST', `/hyperhub/certificates/fleet/generateVerificationCode${API}`, { headers: { 'If-Match': up.headers.etag as string } })
    expect(code.status).toBe(200)
    const verificationCode = code.body.properties.verificationCode as string
    expect(verificationCode).toMatch(/^[0-9A-F]{48}$/)
    const etag = code.headers.etag as string
    const verify = (cert: KeyAndCert, match = etag) => t.rest('POST', `/hyperhub/certificates/fleet/verify${API}`, { body: { certificate: cert.certPem }, headers: { 'If-Match': match } })
    // wrong proofs: a certificate with another CN, one signed by another key, a stale etag
    expect(errorOf(await verify(issueDeviceCertificate('not-the-code', { ca })))).toEqual({ status: 400, message: 'the proof certificate\'s CN is not the verification code' })
    expect(errorOf(await verify(issueDeviceCertificate(verificationCode)))).toEqual({ status: 400, message: "the proof certificate is not signed by certificate 'fleet'" })
    const forged = issueDeviceCertificate(verificationCode, { ca: { certPem: ca.certPem, keyPem: createCertificateAuthority('Forger').keyPem } })
    expect(errorOf(await verify(forged))).toEqual({ status: 400, message: "the proof certificate is not signed by certificate 'fleet'" })
    expect(errorOf(await verify(issueDeviceCertificate(verificationCode, { ca }), up.headers.etag as string))).toEqual({ status: 412, message: 'the etag does not match the certificate\'s' })
    const verified = await verify(issueDeviceCertificate(verificationCode, { ca }))
    expect(verified.status).toBe(200)
    expect(verified.body.properties.isVerified).toBe(true)
    expect(verified.body.properties.verificationCode).toBeUndefined()

    expect(await connectWith('ca-dev', leaf)).toEqual({ code: 0 })
    // through an intermediate the device sends with its leaf
    const root = createCertificateAuthority('Chain Root', { pathLength: 1 })
    const issuing = createCertificateAuthority('Chain Issuing', { issuer: root })
    expect((await upload('chain', root, { isVerified: true })).status).toBe(201)
    await t.createDevice('ca-chained', { authentication: { type: 'certificateAuthority' } })
    const chained = issueDeviceCertificate('ca-chained', { ca: issuing })
    expect(await connectWith('ca-chained', { keyPem: chained.keyPem, certPem: chained.certPem + issuing.certPem })).toEqual({ code: 0 })
    // without the intermediate the chain does not lead anywhere
    expect(await connectWith('ca-chained', chained)).toMatchObject({ code: 5 })
    // a change that revokes nothing (a new verification code for the verified CA) leaves its devices connected
    const { client } = await MqttTestClient.connect({ port: t.hub.ports.mqtt, tls: { ca: t.ca, cert: leaf.certPem, key: leaf.keyPem }, clientId: 'ca-dev' })
    const current = (await t.rest('GET', `/hyperhub/certificates/fleet${API}`)).headers.etag as string
    expect((await t.rest('POST', `/hyperhub/certificates/fleet/generateVerificationCode${API}`, { headers: { 'If-Match': current } })).status).toBe(200)
    expect(await client.publish('devices/ca-dev/messages/events/', 'still connected')).toBeGreaterThan(0)
    client.socket.destroy()
  })

  it('a CA-signed module connects with CN {device}/{module}; its device\'s certificate does not open it', async () => {
    await t.createDevice('ca-mod-dev')
    expect((await t.rest('PUT', `/devices/ca-mod-dev/modules/m1${API}`, { body: { authentication: { type: 'certificateAuthority' } } })).status).toBe(200)
    expect(await connectWith('ca-mod-dev/m1', issueDeviceCertificate('ca-mod-dev/m1', { ca: fleet }))).toEqual({ code: 0 })
    expect(await connectWith('ca-mod-dev/m1', issueDeviceCertificate('ca-mod-dev', { ca: fleet }))).toEqual({ code: 5, reason: "connection refused: the client certificate's CN 'ca-mod-dev' is not the module id 'ca-mod-dev/m1'" })
  })

  it('refuses a leaf whose CN is not the device id, an expired leaf, a leaf of an unknown CA, and an X.509 device without a certificate', async () => {
    const ca = createCertificateAuthority('Strict Root')
    expect((await upload('strict', ca, { isVerified: true })).status).toBe(201)
    await t.createDevice('ca-strict', { authentication: { type: 'certificateAuthority' } })
    expect(await connectWith('ca-strict', issueDeviceCertificate('someone-else', { ca }))).toEqual({ code: 5, reason: "connection refused: the client certificate's CN 'someone-else' is not the device id 'ca-strict'" })
    const old = issueDeviceCertificate('ca-strict', { ca, notBefore: new Date(Date.now() - 10 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) })
    expect(await connectWith('ca-strict', old)).toEqual({ code: 5, reason: 'connection refused: the client certificate is expired or not yet valid' })
    expect(await connectWith('ca-strict', issueDeviceCertificate('ca-strict', { ca: createCertificateAuthority('Strict Root') }))).toEqual({ code: 5, reason: 'connection refused: the client certificate\'s chain does not lead to a verified CA certificate of this hub' })
    // a certificate for a TLS server (serverAuth only) whose CN happens to be the device id
    expect(await connectWith('ca-strict', issueServerCertificate(ca, ['ca-strict']))).toEqual({ code: 5, reason: 'connection refused: the client certificate\'s chain does not lead to a verified CA certificate of this hub' })
    // two CNs: ambiguous, whichever of them is the device id
    expect(await connectWith('ca-strict', issueDeviceCertificate(['someone', 'ca-strict'], { ca }))).toEqual({ code: 5, reason: "connection refused: the client certificate's CN (none, or more than one) is not the device id 'ca-strict'" })
    // a root that allows no intermediate (path length 0): a leaf under an intermediate it signed is refused
    const strictRoot = createCertificateAuthority('No Intermediates', { pathLength: 0 })
    expect((await upload('no-intermediates', strictRoot, { isVerified: true })).status).toBe(201)
    const below = createCertificateAuthority('Below', { issuer: strictRoot })
    const underBelow = issueDeviceCertificate('ca-strict', { ca: below })
    expect(await connectWith('ca-strict', { keyPem: underBelow.keyPem, certPem: underBelow.certPem + below.certPem })).toEqual({ code: 5, reason: 'connection refused: the client certificate\'s chain does not lead to a verified CA certificate of this hub' })
    // a CN with a character the subject's text form escapes still matches its device
    await t.createDevice('ca,comma', { authentication: { type: 'certificateAuthority' } })
    expect(await connectWith('ca,comma', issueDeviceCertificate('ca,comma', { ca }))).toEqual({ code: 0 })
    // names and key ids that point at the CA, signed by another key: a forgery
    const forger = { certPem: ca.certPem, keyPem: createCertificateAuthority('Forger').keyPem }
    expect(await connectWith('ca-strict', issueDeviceCertificate('ca-strict', { ca: forger }))).toEqual({ code: 5, reason: 'connection refused: the client certificate\'s chain does not lead to a verified CA certificate of this hub' })
    // a self-signed certificate with the right CN is not CA-signed
    expect(await connectWith('ca-strict', issueDeviceCertificate('ca-strict'))).toMatchObject({ code: 5 })
    // deleting the CA closes its devices' connections (MQTT and AMQP) and refuses them from then on
    const good = issueDeviceCertificate('ca-strict', { ca })
    const { client, connack } = await MqttTestClient.connect({ port: t.hub.ports.mqtt, tls: { ca: t.ca, cert: good.certPem, key: good.keyPem }, clientId: 'ca-strict' })
    expect(connack.returnCode).toBe(0)
    await t.createDevice('ca-strict-amqp', { authentication: { type: 'certificateAuthority' } })
    const amqpCert = issueDeviceCertificate('ca-strict-amqp', { ca })
    const container = rhea.create_container({ id: 'ca-amqp' })
    container.on('error', () => {})
    const conn = container.connect({ host: '127.0.0.1', port: t.hub.ports.amqp!, transport: 'tls', servername: 'localhost', ca: t.ca, cert: amqpCert.certPem, key: amqpCert.keyPem, reconnect: false } as rhea.ConnectionOptions)
    conn.on('disconnected', () => {})
    const sender = conn.open_sender({ target: { address: '/devices/ca-strict-amqp/messages/events' } })
    await next(sender, 'sendable')
    const amqpClosed = closeError(conn)
    const etag = (await t.rest('GET', `/hyperhub/certificates/strict${API}`)).headers.etag as string
    expect((await t.rest('DELETE', `/hyperhub/certificates/strict${API}`, { headers: { 'If-Match': etag } })).status).toBe(204)
    await client.closed
    expect(await logged(logRecords, (r) => r.msg === 'connection closed' && r.deviceId === 'ca-strict' && r.reason === 'its certificate no longer leads to a verified CA certificate of the hub')).toBe(true)
    expect(await amqpClosed).toMatchObject({ condition: 'amqp:unauthorized-access', description: 'a device certificate on this connection no longer leads to a verified CA certificate of the hub' })
    expect(await connectWith('ca-strict', good)).toMatchObject({ code: 5 })
  })

  it('refuses bad uploads and calls with exact errors', async () => {
    const ca = createCertificateAuthority('Bad Root')
    expect(errorOf(await t.rest('PUT', `/hyperhub/certificates/bad${API}`, { body: { properties: { certificate: 'not a pem' } } }))).toEqual({ status: 400, message: 'properties.certificate is not a certificate that parses (PEM or its base64 body)' })
    expect(errorOf(await t.rest('PUT', `/hyperhub/certificates/bad${API}`, { body: {} }))).toEqual({ status: 400, message: 'properties.certificate must be a PEM certificate' })
    expect(errorOf(await upload('bad', issueDeviceCertificate('leaf')))).toEqual({ status: 400, message: 'properties.certificate is not a CA certificate (its basic constraints must say CA:TRUE)' })
    // a root whose self-signature no longer verifies (one byte of its serial changed)
    const der = new X509Certificate(ca.certPem).raw
    der[16] = der[16]! ^ 0x01
    const damaged = `-----BEGIN CERTIFICATE-----\n${der.toString('base64')}\n-----END CERTIFICATE-----\n`
    expect(errorOf(await upload('bad', { certPem: damaged, keyPem: '' }))).toEqual({ status: 400, message: 'properties.certificate is self-issued but its signature does not verify' })
    expect(errorOf(await upload('bad%20name', ca))).toEqual({ status: 400, message: "certificate name 'bad name' must be 1 to 64 letters, digits, '.', '_' or '-'" })
    expect(errorOf(await upload('bad', ca, { isVerified: 'yes' }))).toEqual({ status: 400, message: 'properties.isVerified must be true or false' })
    expect(errorOf(await t.rest('GET', `/hyperhub/certificates/nobody${API}`))).toEqual({ status: 404, message: "certificate 'nobody' does not exist" })
    const up = await upload('bad', ca)
    expect(errorOf(await upload('bad', ca, {}, { 'If-Match': '"stale"' }))).toEqual({ status: 412, message: 'the etag does not match the certificate\'s' })
    expect(errorOf(await t.rest('POST', `/hyperhub/certificates/bad/generateVerificationCode${API}`))).toEqual({ status: 412, message: 'If-Match with the certificate\'s etag is required' })
    expect(errorOf(await t.rest('POST', `/hyperhub/certificates/bad/verify${API}`, { body: { certificate: ca.certPem }, headers: { 'If-Match': up.headers.etag as string } })))
      .toEqual({ status: 400, message: "certificate 'bad' has no verification code: generate one first" })
    // a base64 body alone is taken, as Azure takes it
    const body = ca.certPem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '')
    expect((await t.rest('PUT', `/hyperhub/certificates/bare${API}`, { body: { properties: { certificate: body } } })).status).toBe(201)
  })

  it(`holds at most ${MAX_CA_CERTIFICATES}, and keeps them across a restart`, async () => {
    const have = (await t.rest('GET', `/hyperhub/certificates${API}`)).body.value.length as number
    for (let i = have; i < MAX_CA_CERTIFICATES; i++) expect((await upload(`many${i}`, createCertificateAuthority(`Many ${i}`))).status).toBe(201)
    expect(errorOf(await upload('one-too-many', createCertificateAuthority('Too Many')))).toEqual({ status: 400, message: 'a hub holds at most 25 CA certificates' })
    const before = (await t.rest('GET', `/hyperhub/certificates${API}`)).body
    await t.hub.stop()
    t = await startTestHub({}, { dataDir, logRecords })
    expect((await t.rest('GET', `/hyperhub/certificates${API}`)).body).toEqual(before)
    // the verified CA still admits its device
    expect(await connectWith('ca-dev', fleetLeaf)).toEqual({ code: 0 })
  })
})
