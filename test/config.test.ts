// Settings from flags, environment and file, each validated with a message that says how to fix it.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { ConfigError, loadConfig } from '../src/config.js'
import { startHub, StartupError } from '../src/hub.js'
import { createLogger } from '../src/log.js'
import { isNativeUws, loadNativeUws } from '../src/uws-native.js'
import uWS from '../src/uws-native.js'
import { seedPki, testConfig } from './helpers/test-hub.js'

const dir = mkdtempSync(join(tmpdir(), 'hyperhub-config-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('loadConfig', () => {
  it('has the documented defaults', () => {
    const c = loadConfig([], {})
    expect(c).toMatchObject({ hostName: 'localhost', mqttPort: 8883, httpsPort: 443, mqttTcpPort: null, partitions: 4, retentionDays: 1, logLevel: 'info' })
    expect(c.shards).toBeGreaterThanOrEqual(1)
    expect(c.dataDir).toMatch(/\/data$/)
  })

  it('takes flags over environment over file', () => {
    const file = join(dir, 'hub.json')
    writeFileSync(file, JSON.stringify({ mqttPort: 1001, httpsPort: 1002, partitions: 8, tlsNames: ['hub.lan'] }))
    const c = loadConfig(['--config', file, '--mqtt-port=2001'], { HYPERHUB_MQTT_PORT: '3001', HYPERHUB_HTTPS_PORT: '3002', HYPERHUB_MQTT_TCP_PORT: '1883' })
    expect(c).toMatchObject({ mqttPort: 2001, httpsPort: 3002, partitions: 8, tlsNames: ['hub.lan'], mqttTcpPort: 1883 })
    expect(loadConfig(['--mqtt-tcp-port', 'off'], { HYPERHUB_MQTT_TCP_PORT: '1883' }).mqttTcpPort).toBeNull()
  })

  it.each([
    [['--mqtt-port', 'abc'], /mqttPort: must be a port number 0\.\.65535 \(got "abc"\); set it with --mqtt-port, HYPERHUB_MQTT_PORT or "mqttPort" in the config file/],
    [['--https-port', '70000'], /httpsPort: must be a port number/],
    [['--shards', '0'], /shards: must be an integer 1\.\.64/],
    [['--partitions', '64'], /partitions: must be an integer 2\.\.32/],
    [['--retention-days', '9'], /retentionDays: must be an integer 1\.\.7/],
    [['--log-level', 'loud'], /logLevel: must be debug, info, warn, error or silent/],
    [['--host-name', ' '], /hostName: must be a non-empty string/],
    [['--frobnicate', '1'], /unknown option --frobnicate/],
    [['--mqtt-port'], /--mqtt-port needs a value/],
  ])('rejects %j', (argv, message) => {
    expect(() => loadConfig(argv as string[], {})).toThrow(ConfigError)
    expect(() => loadConfig(argv as string[], {})).toThrow(message)
  })

  it('naming mode: --azure-hub-name makes the host name <name>.azure-devices.net, and refuses a bad name or a second host name', () => {
    expect(loadConfig(['--azure-hub-name', 'MyHub'], {}).hostName).toBe('myhub.azure-devices.net')
    expect(loadConfig([], { HYPERHUB_AZURE_HUB_NAME: 'lab-7' }).hostName).toBe('lab-7.azure-devices.net')
    expect(loadConfig(['--azure-hub-name', 'lab-7', '--host-name', 'lab-7.azure-devices.net'], {}).hostName).toBe('lab-7.azure-devices.net')
    expect(() => loadConfig(['--azure-hub-name', '-bad'], {})).toThrow('azureHubName: must be 3-50 letters, digits and hyphens, not starting or ending with a hyphen (got "-bad"); set it with --azure-hub-name, HYPERHUB_AZURE_HUB_NAME or "azureHubName" in the config file')
    expect(() => loadConfig(['--azure-hub-name', 'ab'], {})).toThrow(/azureHubName: must be 3-50/)
    expect(() => loadConfig(['--azure-hub-name', 'lab', '--host-name', 'hub.lan'], {})).toThrow('azureHubName: sets the host name to lab.azure-devices.net, but hostName is also set (to "hub.lan"); set only one of them')
  })

  it('rejects bad environment values and bad config files', () => {
    expect(() => loadConfig([], { HYPERHUB_SHARDS: 'many' })).toThrow(/shards: must be an integer/)
    const bad = join(dir, 'bad.json')
    writeFileSync(bad, '{ not json')
    expect(() => loadConfig(['--config', bad], {})).toThrow(/config file .*bad\.json/)
    const unknown = join(dir, 'unknown.json')
    writeFileSync(unknown, JSON.stringify({ mqttPrt: 1 }))
    expect(() => loadConfig(['--config', unknown], {})).toThrow(/unknown setting "mqttPrt"/)
    expect(() => loadConfig(['--config', join(dir, 'missing.json')], {})).toThrow(/config file/)
  })

  it('takes the blob store as embedded, off or a connection string, and never echoes a connection string it refuses', () => {
    expect(loadConfig([], {}).blobStore).toBe('embedded')
    expect(loadConfig(['--blob-store', 'off'], {}).blobStore).toBe('off')
    const cs = 'DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0;EndpointSuffix=core.windows.net'
    expect(loadConfig([], { HYPERHUB_BLOB_STORE: cs }).blobStore).toBe(cs)
    let message = ''
    try { loadConfig(['--blob-store', 'Key=c2VjcmV0'], {}) } catch (e) { message = (e as Error).message }
    expect(message).toBe('blobStore: must be embedded, off or a storage connection string (AccountName=…;AccountKey=…); set it with --blob-store, HYPERHUB_BLOB_STORE or "blobStore" in the config file')
    expect(() => loadConfig(['--file-upload-container', 'Bad_Name'], {})).toThrow(/fileUploadContainer: must be 3-63 lowercase letters, digits and single hyphens/)
    expect(() => loadConfig(['--file-notification-lock-seconds', '4'], {})).toThrow(/fileNotificationLockSeconds: must be an integer 5..300/)
  })
})

describe('start-up errors', () => {
  it('names the setting to change when a port cannot be bound', async () => {
    const blocker = net.createServer()
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()))
    const taken = (blocker.address() as net.AddressInfo).port
    const dataDir = mkdtempSync(join(dir, 'port-'))
    seedPki(dataDir)
    const attempt = startHub(testConfig(dataDir, { mqttPort: taken }), createLogger('silent'))
    await expect(attempt).rejects.toThrow(StartupError)
    await expect(attempt).rejects.toThrow(new RegExp(`cannot listen on 127\\.0\\.0\\.1:${taken} for MQTT over TLS \\(EADDRINUSE\\); set it with --mqtt-port`))
    blocker.close()
  })

  it('refuses a partition count that differs from the data directory\'s', async () => {
    const dataDir = mkdtempSync(join(dir, 'parts-'))
    seedPki(dataDir)
    const hub = await startHub(testConfig(dataDir), createLogger('silent'))
    await hub.stop()
    await expect(startHub(testConfig(dataDir, { partitions: 8 }), createLogger('silent'))).rejects.toThrow(/created with 4 partitions/)
  })

  it('runs only on the native uWebSockets.js binary', () => {
    expect(isNativeUws(uWS)).toBe(true)
    expect(isNativeUws({ App: () => {}, SSLApp: () => {} })).toBe(false)
    expect(() => loadNativeUws('uWebSockets.js/binaries/uws_nowhere_x64_0.node')).toThrow(/native binary failed to load .*refuses to run on the slow JS fallback/)
  })
})
