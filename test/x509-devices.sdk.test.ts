// Issue 17 (first part): X.509 self-signed devices with the official device SDK over Mqtt, on the
// standard port. A device registered with the SHA-1 or SHA-256 thumbprint of its certificate connects
// with `x509=true` and the certificate, no key; it sends telemetry (stamped x509Certificate) and gets
// C2D. A certificate whose thumbprint is not registered, an expired one, one presented for a SAS
// device, and none at all are refused with UnauthorizedError.
import { closeCount, closeReasonAfter } from './helpers/log-wait.js'
import { createHash, X509Certificate } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Client as DeviceClient, Message } from 'azure-iot-device'
import { Mqtt } from 'azure-iot-device-mqtt'
import { Amqp, AmqpWs } from 'azure-iot-device-amqp'
import { MqttWs } from 'azure-iot-device-mqtt'
import { Http } from 'azure-iot-device-http'
import { Registry } from 'azure-iothub'
import { createCertificateAuthority, issueDeviceCertificate, type KeyAndCert } from '../src/tls/local-pki.js'
import { startTestHub, type TestHub } from './helpers/test-hub.js'
import { waitForEvents } from './helpers/events.js'
import { MqttTestClient } from './helpers/mqtt-test-client.js'

let t: TestHub
let registry: Registry
const logRecords: Record<string, unknown>[] = []
beforeAll(async () => {
  if (!process.env.NODE_EXTRA_CA_CERTS) throw new Error('run through `npm test`: the SDKs need NODE_EXTRA_CA_CERTS set at process start')
  t = await startTestHub({ mqttPort: 8883, httpsPort: 443, mqttTcpPort: null, amqpPort: 5671 }, { logRecords })
  registry = Registry.fromConnectionString(`HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=${t.policyKey('iothubowner')}`)
})
afterAll(async () => { await t?.stop() })

const thumbprint = (c: KeyAndCert, alg: 'sha1' | 'sha256') => createHash(alg).update(new X509Certificate(c.certPem).raw).digest('hex').toUpperCase()

type Transport = typeof Mqtt | typeof MqttWs | typeof Amqp | typeof AmqpWs | typeof Http

async function x509Client(deviceId: string, cert: KeyAndCert, transport: Transport = Mqtt): Promise<DeviceClient> {
  const client = DeviceClient.fromConnectionString(`HostName=localhost;DeviceId=${deviceId};x509=true`, transport)
  // azure-iot-device-http answers setOptions only when it carries a receive policy: one is given (poll every second)
  await client.setOptions({ cert: cert.certPem, key: cert.keyPem, ...(transport === Http ? { http: { receivePolicy: { interval: 1 } } } : {}) })
  return client
}

describe('X.509 self-signed devices over Mqtt', () => {
  it('connect with a registered thumbprint (SHA-1 primary or SHA-256 secondary), send telemetry and receive C2D', async () => {
    const cert = issueDeviceCertificate('x509-dev')
    const spare = issueDeviceCertificate('x509-dev')
    await registry.create({ deviceId: 'x509-dev', authentication: { x509Thumbprint: { primaryThumbprint: thumbprint(cert, 'sha1'), secondaryThumbprint: thumbprint(spare, 'sha256') } } })
    for (const c of [cert, spare]) {
      const client = await x509Client('x509-dev', c)
      await client.open()
      const m = new Message('by certificate')
      m.messageId = `x509-${c === cert ? 'primary' : 'secondary'}`
      await client.sendEvent(m)
      await client.close()
    }
    const events = await waitForEvents(t, 'x509-dev', 2)
    expect(events.map((e) => [e.systemProperties['message-id'], JSON.parse(e.systemProperties['iothub-connection-auth-method']!).type])).toEqual([['x509-primary', 'x509Certificate'], ['x509-secondary', 'x509Certificate']])

    const client = await x509Client('x509-dev', cert)
    const received = new Promise<Message>((resolve) => client.on('message', (msg: Message) => { void client.complete(msg, () => {}); resolve(msg) }))
    await client.open()
    expect((await t.rest('POST', '/devices/x509-dev/messages/deviceBound', { raw: 'to the certificate', headers: { 'iothub-messageid': 'c2d-x509' } })).status).toBe(200)
    expect((await received).messageId).toBe('c2d-x509')
    await client.close()
  }, 30_000)

  it('refuses an unregistered thumbprint, an expired certificate, a certificate for a SAS device, and no credential at all', async () => {
    const registered = issueDeviceCertificate('x509-strict')
    await registry.create({ deviceId: 'x509-strict', authentication: { x509Thumbprint: { primaryThumbprint: thumbprint(registered, 'sha256') } } })
    const refusal = async (deviceId: string, cert: KeyAndCert) => {
      const before = closeCount(logRecords)
      const client = await x509Client(deviceId, cert)
      const error = await client.open().then(() => undefined, (e: Error) => e)
      await client.close().catch(() => {})
      return { name: error?.constructor.name, reason: await closeReasonAfter(logRecords, before) }
    }
    const stranger = issueDeviceCertificate('x509-strict')
    expect(await refusal('x509-strict', stranger)).toEqual({ name: 'UnauthorizedError', reason: expect.stringMatching(/^connection refused: Thumbprint does not match configuration: Thumbprint: SHA1Hash=[0-9A-F]{40}, SHA2Hash=[0-9A-F]{64}; Configuration: PrimaryThumbprint=[0-9A-F]{64}, SecondaryThumbprint=$/) })
    const expired = issueDeviceCertificate('x509-old', { notBefore: new Date(Date.now() - 10 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) })
    await registry.create({ deviceId: 'x509-old', authentication: { x509Thumbprint: { primaryThumbprint: thumbprint(expired, 'sha1') } } })
    expect(await refusal('x509-old', expired)).toEqual({ name: 'UnauthorizedError', reason: 'connection refused: the client certificate is expired or not yet valid' })
    await registry.create({ deviceId: 'x509-sas' })
    expect(await refusal('x509-sas', registered)).toEqual({ name: 'UnauthorizedError', reason: 'connection refused: the device does not use X.509: a client certificate is not its credential' })
    // over TLS with neither a password nor a certificate
    const before = closeCount(logRecords)
    const bare = await MqttTestClient.connect({ port: t.hub.ports.mqtt!, tls: { ca: t.ca }, clientId: 'x509-strict' })
    expect(bare.connack.returnCode).toBe(5)
    expect(await closeReasonAfter(logRecords, before)).toBe('connection refused: no SAS token and no client certificate')
  }, 30_000)
})

describe('X.509 self-signed devices over Amqp', () => {
  it('send telemetry and receive C2D with the certificate alone (no put-token); a stranger\'s certificate is refused', async () => {
    const cert = issueDeviceCertificate('x509-amqp')
    await registry.create({ deviceId: 'x509-amqp', authentication: { x509Thumbprint: { primaryThumbprint: thumbprint(cert, 'sha256') } } })
    const client = await x509Client('x509-amqp', cert, Amqp)
    const received = new Promise<Message>((resolve) => client.on('message', (msg: Message) => { void client.complete(msg, () => {}); resolve(msg) }))
    await client.open()
    const m = new Message('over amqp by certificate')
    m.messageId = 'x509-amqp-1'
    await client.sendEvent(m)
    expect((await t.rest('POST', '/devices/x509-amqp/messages/deviceBound', { raw: 'c2d', headers: { 'iothub-messageid': 'c2d-x509-amqp' } })).status).toBe(200)
    expect((await received).messageId).toBe('c2d-x509-amqp')
    await client.close()
    const events = await waitForEvents(t, 'x509-amqp', 1)
    expect(events.map((e) => [e.systemProperties['message-id'], JSON.parse(e.systemProperties['iothub-connection-auth-method']!).type])).toEqual([['x509-amqp-1', 'x509Certificate']])

    const stranger = await x509Client('x509-amqp', issueDeviceCertificate('x509-amqp'), Amqp)
    const refused = await stranger.open().then(() => stranger.sendEvent(new Message('no'))).then(() => undefined, (e: Error) => e)
    await stranger.close().catch(() => {})
    expect(refused?.constructor.name).toBe('UnauthorizedError')
  }, 30_000)
})

describe('X.509 CA-signed devices', () => {
  it('a device whose certificate a verified CA signed sends telemetry and receives C2D over Mqtt and Amqp; a CN that is not its id is refused', async () => {
    const ca = createCertificateAuthority('SDK Fleet CA')
    // proof of possession through the control plane
    const up = await t.rest('PUT', '/hyperhub/certificates/sdk-fleet?api-version=2021-04-12', { body: { properties: { certificate: ca.certPem } } })
    const code = await t.rest('POST', '/hyperhub/certificates/sdk-fleet/generateVerificationCode?api-version=2021-04-12', { headers: { 'If-Match': up.headers.etag as string } })
    const proof = issueDeviceCertificate(code.body.properties.verificationCode, { ca })
    expect((await t.rest('POST', '/hyperhub/certificates/sdk-fleet/verify?api-version=2021-04-12', { body: { certificate: proof.certPem }, headers: { 'If-Match': code.headers.etag as string } })).body.properties.isVerified).toBe(true)

    for (const [deviceId, transport] of [['ca-sdk-mqtt', Mqtt], ['ca-sdk-amqp', Amqp]] as const) {
      await registry.create({ deviceId, authentication: { type: 'certificateAuthority' } } as never)
      const client = await x509Client(deviceId, issueDeviceCertificate(deviceId, { ca }), transport)
      const received = new Promise<Message>((resolve) => client.on('message', (msg: Message) => { void client.complete(msg, () => {}); resolve(msg) }))
      await client.open()
      const m = new Message('CA-signed')
      m.messageId = `${deviceId}-1`
      await client.sendEvent(m)
      expect((await t.rest('POST', `/devices/${deviceId}/messages/deviceBound`, { raw: 'c2d', headers: { 'iothub-messageid': `${deviceId}-c2d` } })).status).toBe(200)
      expect((await received).messageId).toBe(`${deviceId}-c2d`)
      await client.close()
      const events = await waitForEvents(t, deviceId, 1)
      expect(events.map((e) => [e.systemProperties['message-id'], JSON.parse(e.systemProperties['iothub-connection-auth-method']!).type])).toEqual([[`${deviceId}-1`, 'x509Certificate']])

      const impostor = await x509Client(deviceId, issueDeviceCertificate('someone-else', { ca }), transport)
      const refused = await impostor.open().then(() => impostor.sendEvent(new Message('no'))).then(() => undefined, (e: Error) => e)
      await impostor.close().catch(() => {})
      expect({ deviceId, error: refused?.constructor.name }).toEqual({ deviceId, error: 'UnauthorizedError' })
    }
  }, 60_000)
})

describe('X.509 over every transport', () => {
  const TRANSPORTS: [string, Transport][] = [['Mqtt', Mqtt], ['MqttWs', MqttWs], ['Amqp', Amqp], ['AmqpWs', AmqpWs], ['Http', Http]]

  it('self-signed and CA-signed devices send telemetry and receive C2D over Mqtt, MqttWs, Amqp, AmqpWs and Http; a mismatched thumbprint is UnauthorizedError', async () => {
    const ca = createCertificateAuthority('Every Transport CA')
    expect((await t.rest('PUT', '/hyperhub/certificates/every?api-version=2021-04-12', { body: { properties: { certificate: ca.certPem, isVerified: true } } })).status).toBe(201)
    const outcomes: string[] = []
    for (const [name, transport] of TRANSPORTS) {
      for (const kind of ['self', 'ca'] as const) {
        const deviceId = `x509-${name.toLowerCase()}-${kind}`
        const cert = kind === 'self' ? issueDeviceCertificate(deviceId) : issueDeviceCertificate(deviceId, { ca })
        await registry.create(kind === 'self'
          ? { deviceId, authentication: { x509Thumbprint: { primaryThumbprint: thumbprint(cert, 'sha256') } } }
          : { deviceId, authentication: { type: 'certificateAuthority' } } as never)
        const client = await x509Client(deviceId, cert, transport)
        const received = new Promise<Message>((resolve) => client.on('message', (msg: Message) => { void client.complete(msg, () => {}); resolve(msg) }))
        await client.open()
        const m = new Message(`${name} ${kind}`)
        m.messageId = `${deviceId}-d2c`
        await client.sendEvent(m)
        expect((await t.rest('POST', `/devices/${deviceId}/messages/deviceBound`, { raw: 'c2d', headers: { 'iothub-messageid': `${deviceId}-c2d` } })).status).toBe(200)
        outcomes.push(`${deviceId}: ${(await received).messageId}`)
        await client.close()
        const events = await waitForEvents(t, deviceId, 1)
        expect(events.map((e) => [e.systemProperties['message-id'], JSON.parse(e.systemProperties['iothub-connection-auth-method']!).type])).toEqual([[`${deviceId}-d2c`, 'x509Certificate']])
      }
      // a certificate whose thumbprint is not the registered one
      const stranger = await x509Client(`x509-${name.toLowerCase()}-self`, issueDeviceCertificate(`x509-${name.toLowerCase()}-self`), transport)
      const refused = await stranger.open().then(() => stranger.sendEvent(new Message('no'))).then(() => undefined, (e: Error) => e)
      await stranger.close().catch(() => {})
      outcomes.push(`${name} stranger: ${refused?.constructor.name}`)
    }
    expect(outcomes).toEqual(TRANSPORTS.flatMap(([name]) => {
      const id = (k: string) => `x509-${name.toLowerCase()}-${k}`
      return [`${id('self')}: ${id('self')}-c2d`, `${id('ca')}: ${id('ca')}-c2d`, `${name} stranger: UnauthorizedError`]
    }))
  }, 180_000)
})
