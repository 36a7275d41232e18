// Issue 17 item 3 with the official service SDK: `Registry.fromTokenCredential` (HTTPS) and
// `Client.fromTokenCredential` (AMQP, `Bearer` put on $cbs) against a hub with local authentication
// disabled, as Azure's disableLocalAuth. Bearer tokens for a role do what the role allows and are
// refused, by name, for the rest; policy tokens are refused but on the built-in endpoint; a device's
// own key still connects it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Client as DeviceClient, Message } from 'azure-iot-device'
import { Mqtt } from 'azure-iot-device-mqtt'
import { Client as ServiceClient, Registry } from 'azure-iothub'
import { ensureLocalIssuerKey, signRoleToken } from '../src/auth/local-issuer.js'
import { LOCAL_AUTH_DISABLED } from '../src/auth/authenticator.js'
import { startTestHub, type TestHub } from './helpers/test-hub.js'
import { MqttTestClient } from './helpers/mqtt-test-client.js'
import type { JWK } from 'jose'
import { amqpConnect, next, putToken } from './helpers/amqp-client.js'
import { createSasToken } from '../src/auth/sas-token.js'
import { EventHubConsumerClient } from '@azure/event-hubs'

let t: TestHub
let key: JWK
beforeAll(async () => {
  if (!process.env.NODE_EXTRA_CA_CERTS) throw new Error('run through `npm test`: the SDKs need NODE_EXTRA_CA_CERTS set at process start')
  t = await startTestHub({ mqttPort: 8883, httpsPort: 443, mqttTcpPort: 0, amqpPort: 5671, disableLocalAuth: true })
  key = await ensureLocalIssuerKey(t.dataDir)
})
afterAll(async () => { await t?.stop() })

/** A TokenCredential as @azure/identity's are: getToken(scope) → { token, expiresOnTimestamp }. */
function credential(role: string) {
  const scopes: string[] = []
  return {
    scopes,
    async getToken(scope: string | string[]) {
      scopes.push(String(scope))
      return { token: await signRoleToken(key, { roles: [role], subject: `${role.toLowerCase().replace(/ /g, '-')}@example`, ttlSeconds: 600 }), expiresOnTimestamp: Date.now() + 600_000 }
    },
  }
}

const failure = (p: Promise<unknown>) => p.then(() => 'succeeded',
  (e: Error & { responseBody?: string; amqpError?: { description?: string; message?: string } }) => `${e.constructor.name}: ${e.responseBody ?? e.amqpError?.description ?? e.amqpError?.message ?? e.message}`)

describe('bearer tokens with the service SDK, local authentication disabled', () => {
  it('Registry with a Registry Contributor role manages identities and is refused twins', async () => {
    const cred = credential('IoT Hub Registry Contributor')
    const registry = Registry.fromTokenCredential('localhost', cred)
    const created = await registry.create({ deviceId: 'rbac-dev' })
    expect(created.responseBody.deviceId).toBe('rbac-dev')
    expect((await registry.get('rbac-dev')).responseBody.deviceId).toBe('rbac-dev')
    expect(cred.scopes[0]).toBe('https://iothubs.azure.net/.default')
    const refused = await failure(registry.getTwin('rbac-dev'))
    expect(refused).toMatch(/^UnauthorizedError: /)
    expect(refused).toContain('Principal iot-hub-registry-contributor@example is not authorized for GET on /twins/rbac-dev due to no assigned permissions')
  })

  it('Registry with a Twin Contributor role updates twins and cannot create devices', async () => {
    const registry = Registry.fromTokenCredential('localhost', credential('IoT Hub Twin Contributor'))
    const twin = (await registry.getTwin('rbac-dev')).responseBody
    await twin.update({ tags: { site: 'lab' } })
    expect((await registry.getTwin('rbac-dev')).responseBody.tags).toEqual({ site: 'lab' })
    expect(await failure(registry.create({ deviceId: 'rbac-other' }))).toContain('Principal iot-hub-twin-contributor@example is not authorized for PUT on /devices/rbac-other due to no assigned permissions')
  })

  it('a service Client with Data Contributor sends C2D over AMQP to a device on its own key; Data Reader is refused the send', async () => {
    const owner = Registry.fromTokenCredential('localhost', credential('IoT Hub Data Contributor'))
    const device = (await owner.get('rbac-dev')).responseBody
    const deviceClient = DeviceClient.fromConnectionString(`HostName=localhost;DeviceId=rbac-dev;SharedAccessKey=${device.authentication!.symmetricKey!.primaryKey}`, Mqtt)
    const received = new Promise<Message>((resolve) => deviceClient.on('message', (m: Message) => { void deviceClient.complete(m, () => {}); resolve(m) }))
    await deviceClient.open()
    const sender = ServiceClient.fromTokenCredential('localhost', credential('IoT Hub Data Contributor'))
    await sender.open()
    const m = new Message('by bearer')
    m.messageId = 'rbac-c2d'
    await sender.send('rbac-dev', m)
    expect((await received).messageId).toBe('rbac-c2d')
    await sender.close()
    await deviceClient.close()

    const reader = ServiceClient.fromTokenCredential('localhost', credential('IoT Hub Data Reader'))
    await reader.open() // the token is good; the C2D link is what its role does not cover
    expect(await failure(reader.send('rbac-dev', new Message('not allowed')))).toMatch(/^UnauthorizedError: .*cloudToDeviceMessages\/send\/action/)
    await reader.close()
  }, 30_000)

  it('refuses policy tokens on service routes and for devices, keeps them on the built-in endpoint', async () => {
    const sas = Registry.fromConnectionString(`HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=${t.policyKey('iothubowner')}`)
    const refused = await failure(sas.get('rbac-dev'))
    expect(refused).toMatch(/^UnauthorizedError: /)
    expect(refused).toContain(LOCAL_AUTH_DISABLED)
    const direct = await t.rest('GET', '/devices/rbac-dev')
    expect([direct.status, direct.body.Message]).toEqual([401, `ErrorCode:IotHubUnauthorized;Unauthorized: ${LOCAL_AUTH_DISABLED}`])
    expect((await t.rest('GET', '/messages/events/partitions', { token: t.serviceToken('service') })).status).toBe(200)
    // AMQP: the service client's policy token is refused; the Event Hubs entity's is taken
    const sasClient = ServiceClient.fromConnectionString(`HostName=localhost;SharedAccessKeyName=service;SharedAccessKey=${t.policyKey('service')}`)
    expect(await failure(sasClient.open())).toBe(`Error: Unauthorized: ${LOCAL_AUTH_DISABLED}`)
    const conn = await amqpConnect(5671, t.ca)
    expect(await putToken(conn, t.serviceToken('service'), 'localhost')).toBe(401)
    expect(await putToken(conn, createSasToken(`sb://localhost/${t.hub.eventHubName}`, t.policyKey('service'), 'service'), `sb://localhost/${t.hub.eventHubName}`)).toBe(200)
    const receiver = conn.open_receiver({ source: { address: `${t.hub.eventHubName}/ConsumerGroups/$Default/Partitions/0` } })
    await next(receiver, 'receiver_open')
    conn.close()
    // the official Event Hubs client, which puts tokens for the entity's $management and partitions
    const eh = new EventHubConsumerClient('$Default', `Endpoint=sb://localhost/;SharedAccessKeyName=service;SharedAccessKey=${t.policyKey('service')};EntityPath=${t.hub.eventHubName}`, { retryOptions: { maxRetries: 0, timeoutInMs: 10_000 } })
    try {
      expect((await eh.getEventHubProperties()).partitionIds).toEqual(['0', '1', '2', '3'])
    } finally {
      await eh.close()
    }
    const { connack } = await MqttTestClient.connect({ port: t.hub.ports.mqttTcp!, clientId: 'rbac-dev', password: t.serviceToken('device') })
    expect(connack.returnCode).toBe(5)
  })
})
