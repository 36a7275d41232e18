// Issue 11 items 2, 4, 6 and 8: keys on disk readable by the hub's user only; webhook destinations
// that would reach into the hub's own network or its own ports; a storage endpoint named `..`;
// application property names that are Object.prototype's; tokens valid for centuries; floods of
// refused CONNECTs in the log.
import { mkdirSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { createSasToken } from '../src/auth/sas-token.js'
import { guardedLookup } from '../src/routing/webhook-destination.js'
import { LogRateLimit } from '../src/log-rate-limit.js'
import { MqttTestClient } from './helpers/mqtt-test-client.js'
import { readAllEvents, eventsOf } from './helpers/events.js'
import { seedPki, startTestHub, tempDir, type TestHub } from './helpers/test-hub.js'

const hubs: TestHub[] = []
const dirs: string[] = []
afterAll(async () => {
  for (const h of hubs) await h.stop()
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})
const mode = (path: string) => (statSync(path).mode & 0o777).toString(8)

describe('the data directory', () => {
  it('is created 0700, with the store and the keys 0600', async () => {
    const parent = tempDir()
    dirs.push(parent)
    const dataDir = join(parent, 'fresh')
    const t = await startTestHub({}, { dataDir, ownPki: true })
    hubs.push(t)
    expect(mode(dataDir)).toBe('700')
    for (const f of ['hub.mdb', 'hub.mdb-lock', 'tls/ca.key', 'tls/server.key']) expect({ f, mode: mode(join(dataDir, f)) }).toEqual({ f, mode: '600' })
  })

  it('warns at start when an existing one is open to other users', async () => {
    const dataDir = tempDir()
    dirs.push(dataDir)
    mkdirSync(dataDir, { recursive: true, mode: 0o755 })
    rmSync(dataDir, { recursive: true })
    mkdirSync(dataDir, { mode: 0o755 })
    seedPki(dataDir)
    const logRecords: Record<string, unknown>[] = []
    const t = await startTestHub({}, { dataDir, logRecords })
    hubs.push(t)
    expect(logRecords).toContainEqual(expect.objectContaining({ level: 'warn', msg: 'the data directory is open to other users; it holds every key of the hub', mode: '0755' }))
  })
})

describe('routing endpoints', () => {
  it('refuses a storage endpoint named . or .., which would write outside the endpoints folder', async () => {
    const t = await startTestHub()
    hubs.push(t)
    for (const name of ['..', '.', '...']) {
      const r = await t.rest('PUT', `/routing/endpoints/storageContainers/${encodeURIComponent(name)}`, { body: {} })
      expect(r.status).toBe(400)
      expect(r.body.Message).toBe(`ErrorCode:ArgumentInvalid;endpoint name ${JSON.stringify(name)} is invalid: 1-64 letters, digits, '.', '_' or '-', not only dots`)
    }
  })

  it('refuses webhooks to private addresses unless allowed, and to the hub\'s own ports always', async () => {
    const strict = await startTestHub({ allowPrivateWebhooks: false })
    hubs.push(strict)
    for (const url of ['http://127.0.0.1:9/x', 'http://localhost:9/x', 'http://10.1.2.3/x', 'http://[::1]:9/x', 'http://169.254.169.254/latest/meta-data']) {
      const r = await strict.rest('PUT', '/routing/endpoints/webhooks/w', { body: { url } })
      expect({ url, status: r.status, message: r.body.Message }).toEqual({
        url, status: 400, message: 'ErrorCode:ArgumentInvalid;webhook w: the url names a loopback, link-local or private address (set allowPrivateWebhooks to allow it)',
      })
    }
    const open = await startTestHub({ allowPrivateWebhooks: true })
    hubs.push(open)
    const own = await open.rest('PUT', '/routing/endpoints/webhooks/w', { body: { url: `https://127.0.0.1:${open.hub.ports.https}/devices` } })
    expect(own.status).toBe(400)
    expect(own.body.Message).toBe(`ErrorCode:ArgumentInvalid;webhook w: the url names this hub's own port ${open.hub.ports.https}`)
    expect((await open.rest('PUT', '/routing/endpoints/webhooks/w', { body: { url: 'http://127.0.0.1:9/x' } })).status).toBe(200)
  })

  it('checks the address a webhook\'s host name resolves to when it connects', async () => {
    const lookup = guardedLookup(new URL('http://localhost:8080/x'), () => ({ allowPrivate: false, hubPorts: [] }))
    const refused = await new Promise<NodeJS.ErrnoException | null>((resolve) => lookup('localhost', {}, (err) => resolve(err)))
    expect(refused).toMatchObject({ code: 'DESTINATION_REFUSED', message: 'the url names a loopback, link-local or private address (set allowPrivateWebhooks to allow it)' })
    const allowed = guardedLookup(new URL('http://localhost:8080/x'), () => ({ allowPrivate: true, hubPorts: [] }))
    expect(await new Promise((resolve) => allowed('localhost', {}, (err, address) => resolve(err ?? address)))).toBe('127.0.0.1')
    const ownPort = guardedLookup(new URL('http://localhost:8883/x'), () => ({ allowPrivate: true, hubPorts: [8883] }))
    expect(await new Promise((resolve) => ownPort('localhost', {}, (err) => resolve(err?.message)))).toBe("the url names this hub's own port 8883")
  })
})

describe('what a client names', () => {
  it('keeps application properties named __proto__, constructor and toString as application properties', async () => {
    const t = await startTestHub()
    hubs.push(t)
    const { primaryKey } = await t.createDevice('proto-dev')
    const { client } = await MqttTestClient.connect({ port: t.hub.ports.mqttTcp!, clientId: 'proto-dev', password: t.deviceToken('proto-dev', primaryKey) })
    await client.publish('devices/proto-dev/messages/events/__proto__=a&constructor=b&toString=c&hasOwnProperty=d', 'x', 1)
    await client.disconnect()
    const [e] = eventsOf(await readAllEvents(t), 'proto-dev')
    expect(Object.entries(e!.properties).sort()).toEqual([['__proto__', 'a'], ['constructor', 'b'], ['hasOwnProperty', 'd'], ['toString', 'c']])
    expect(Object.keys(e!.systemProperties).sort()).toEqual(['iothub-connection-auth-generation-id', 'iothub-connection-auth-method', 'iothub-connection-device-id', 'iothub-enqueuedtime', 'iothub-message-source'])
  })

  it('refuses tokens valid for longer than the hub allows', async () => {
    const t = await startTestHub({ maxTokenLifetimeDays: 30 })
    hubs.push(t)
    const { primaryKey } = await t.createDevice('long-token')
    const longDevice = createSasToken(encodeURIComponent('localhost/devices/long-token'), primaryKey, undefined, 31 * 86_400)
    const refused = await MqttTestClient.connect({ port: t.hub.ports.mqttTcp!, clientId: 'long-token', password: longDevice })
    expect(refused.connack.returnCode).toBe(5)
    const longService = createSasToken('localhost', t.policyKey('iothubowner'), 'iothubowner', 31 * 86_400)
    const r = await t.rest('GET', '/devices', { token: longService })
    expect(r.status).toBe(401)
    expect(r.body.Message).toBe("ErrorCode:IotHubUnauthorized;Unauthorized: token is valid for more than the hub's limit of 30 days")
    expect((await t.rest('GET', '/devices', { token: createSasToken('localhost', t.policyKey('iothubowner'), 'iothubowner', 29 * 86_400) })).status).toBe(200)
  })

  it('logs at most 20 refused CONNECTs in 10 s, and counts the rest', async () => {
    const logRecords: Record<string, unknown>[] = []
    const t = await startTestHub({}, { logRecords })
    hubs.push(t)
    await t.createDevice('flood-target')
    for (let i = 0; i < 50; i++) {
      const { connack } = await MqttTestClient.connect({ port: t.hub.ports.mqttTcp!, clientId: 'flood-target', password: 'SharedAccessSignature sr=x&sig=y&se=1' })
      expect(connack.returnCode).toBe(5)
    }
    // a marker: a good connection's close is logged after all of them
    const { client } = await MqttTestClient.connect({ port: t.hub.ports.mqttTcp!, clientId: 'flood-target', password: t.deviceToken('flood-target', t.hub.registry.get('flood-target')!.authentication.symmetricKey.primaryKey!) })
    await client.disconnect()
    const deadline = Date.now() + 5000
    while (!logRecords.some((r) => r.msg === 'connection closed' && r.reason === 'client disconnected') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    const refusedLines = logRecords.filter((r) => r.msg === 'connection closed' && r.level === 'warn')
    expect(refusedLines).toHaveLength(20)
  })

  it('reports what it suppressed once the next window opens', () => {
    const reports: number[] = []
    const limit = new LogRateLimit(2, 1000, (n) => reports.push(n))
    expect([0, 1, 2, 3, 4].map((i) => limit.allow(10 + i))).toEqual([true, true, false, false, false])
    expect(reports).toEqual([])
    expect(limit.allow(1010)).toBe(true)
    expect(reports).toEqual([3])
  })
})
