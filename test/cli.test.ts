// `hyperhub …` against a real hub: each command as a person runs it (a child process that finds the
// hub from its data directory), and each error a person can hit as one line and its exit code.
import { execFile, spawn } from 'node:child_process'
import https from 'node:https'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type mqttPacket from 'mqtt-packet'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connectDevice, nextPublish, publishesSoFar, until } from './helpers/device-mqtt.js'
import { MqttTestClient } from './helpers/mqtt-test-client.js'
import { eventsOf, readAllEvents } from './helpers/events.js'
import { startTestHub, tempDir, type TestHub } from './helpers/test-hub.js'

const run = promisify(execFile)
let t: TestHub
beforeAll(async () => { t = await startTestHub() })
afterAll(async () => { await t.stop() })

const CLI = ['--import', 'tsx', 'src/cli/hyperhub.ts']
// NODE_EXTRA_CA_CERTS off: the CLI must trust the hub through its data directory's CA alone
function env(): NodeJS.ProcessEnv {
  const e = { ...process.env }
  for (const k of ['NODE_EXTRA_CA_CERTS', 'HYPERHUB_CONNECTION_STRING', 'IOTHUB_CONNECTION_STRING', 'HYPERHUB_DATA_DIR']) delete e[k]
  return e
}
const cli = (...args: string[]) => run(process.execPath, [...CLI, '--data-dir', t.dataDir, ...args], { env: env() })
/** The command's one-line failure: exit code and stderr. */
async function failure(args: string[], dataDir = t.dataDir): Promise<{ code: number; stderr: string }> {
  try {
    await run(process.execPath, [...CLI, '--data-dir', dataDir, ...args], { env: env() })
  } catch (e) {
    const err = e as { code: number; stderr: string }
    return { code: err.code, stderr: err.stderr }
  }
  throw new Error(`hyperhub ${args.join(' ')} succeeded`)
}

describe('hyperhub device', () => {
  it('creates, lists, shows, prints the connection string of and deletes a device', async () => {
    const created = JSON.parse((await cli('--json', 'device', 'create', 'cli-d1')).stdout)
    expect(created).toMatchObject({ deviceId: 'cli-d1', status: 'enabled', authentication: { type: 'sas' } })
    expect(t.hub.registry.get('cli-d1')?.authentication.symmetricKey.primaryKey).toBe(created.authentication.symmetricKey.primaryKey)
    const listed = (await cli('device', 'list')).stdout
    expect(listed.split('\n')[0]).toBe('DEVICE ID  STATUS   CONNECTION    LAST ACTIVITY  AUTH  C2D')
    expect(listed).toMatch(/^cli-d1 +enabled +Disconnected +- +sas +0$/m)
    expect((await cli('device', 'show', 'cli-d1')).stdout).toMatch(/^device id +cli-d1\nstatus +enabled\nconnection +Disconnected\n/)
    // the connection string's key connects the device
    const cs = (await cli('device', 'connection-string', 'cli-d1')).stdout.trim()
    expect(cs).toBe(`HostName=localhost:${t.hub.ports.mqtt};DeviceId=cli-d1;SharedAccessKey=${created.authentication.symmetricKey.primaryKey}`)
    const key = /SharedAccessKey=(.+)$/.exec(cs)![1]!
    const { client, connack } = await MqttTestClient.connect({ port: t.hub.ports.mqttTcp!, clientId: 'cli-d1', password: t.deviceToken('cli-d1', key) })
    expect(connack.returnCode).toBe(0)
    await client.disconnect()
    expect((await cli('device', 'delete', 'cli-d1')).stdout).toBe('deleted cli-d1\n')
    expect(t.hub.registry.get('cli-d1')).toBeUndefined()
  })

  it('answers an unknown device, a duplicate, a wrong etag and a bad option with one line and a non-zero exit code', async () => {
    await t.createDevice('cli-dup')
    expect(await failure(['device', 'show', 'nobody'])).toEqual({ code: 1, stderr: 'hyperhub: the hub answered 404, DeviceNotFound: Device nobody not registered\n' })
    expect(await failure(['device', 'create', 'cli-dup'])).toEqual({ code: 1, stderr: "hyperhub: the hub answered 409, DeviceAlreadyExists: A device with ID 'cli-dup' is already registered.\n" })
    expect(await failure(['device', 'delete', 'cli-dup', '--etag', 'stale'])).toMatchObject({ code: 1, stderr: expect.stringMatching(/^hyperhub: the hub answered 412, PreconditionFailed: .+\n$/) })
    expect(t.hub.registry.get('cli-dup')).toBeDefined()
    expect(await failure(['device', 'list', '--tpo', '3'])).toEqual({ code: 2, stderr: "hyperhub: unknown option '--tpo' (Did you mean --top?)\n" })
    expect(await failure(['device', 'list', '--top', 'many'])).toEqual({ code: 2, stderr: 'hyperhub: --top must be a whole number from 1 to 1000, not "many"\n' })
    expect(await failure(['device', 'lst'])).toEqual({ code: 2, stderr: "hyperhub: unknown command 'lst' (Did you mean list?)\n" })
    expect(await failure(['device', 'create', 'x', '--auth', 'magic'])).toEqual({ code: 2, stderr: "hyperhub: option '--auth <type>' argument 'magic' is invalid. Allowed choices are sas, selfSigned, certificateAuthority.\n" })
  })
})

describe('hyperhub twin, invoke and c2d', () => {
  it('updates desired properties, and the connected device gets the patch', async () => {
    const device = await connectDevice(t, 'cli-twin')
    await device.subscribe('$iothub/twin/PATCH/properties/desired/#', 0)
    const patch = nextPublish(device, '$iothub/twin/PATCH/properties/desired/')
    const updated = JSON.parse((await cli('twin', 'update', 'cli-twin', '--desired', '{"interval":30}', '--tags', '{"site":"lab"}')).stdout)
    expect(updated).toMatchObject({ deviceId: 'cli-twin', tags: { site: 'lab' }, properties: { desired: { interval: 30, $version: 2 } } })
    expect(JSON.parse((await patch).payload.toString())).toMatchObject({ interval: 30, $version: 2 })
    expect(JSON.parse((await cli('twin', 'show', 'cli-twin')).stdout).properties.desired.interval).toBe(30)
    expect(await failure(['twin', 'update', 'cli-twin', '--desired', '{"interval":31}', '--etag', 'AAAAAAAAAAE='])).toMatchObject({ code: 1, stderr: expect.stringMatching(/^hyperhub: the hub answered 412, PreconditionFailed: /) })
    expect(await failure(['twin', 'update', 'cli-twin', '--desired', '{interval:31}'])).toMatchObject({ code: 2, stderr: expect.stringMatching(/^hyperhub: --desired is not valid JSON \(/) })
    expect(await failure(['twin', 'update', 'cli-twin'])).toEqual({ code: 2, stderr: 'hyperhub: twin update needs --desired or --tags (or both)\n' })
    expect(await failure(['twin', 'show', 'nobody'])).toMatchObject({ code: 1, stderr: expect.stringMatching(/^hyperhub: the hub answered 404, DeviceNotFound: /) })
    await device.disconnect()
  })

  it('invokes a method the device answers, and names an offline device', async () => {
    const device = await connectDevice(t, 'cli-method')
    await device.subscribe('$iothub/methods/POST/#', 0)
    const request = nextPublish(device, '$iothub/methods/POST/')
    const call = cli('--json', 'invoke', 'cli-method', 'reboot', '--payload', '{"delay":5}', '--timeout', '10')
    const p = await request
    expect(p.topic).toMatch(/^\$iothub\/methods\/POST\/reboot\/\?\$rid=/)
    expect(JSON.parse(p.payload.toString())).toEqual({ delay: 5 })
    const rid = /\?\$rid=(.+)$/.exec(p.topic)![1]!
    device.send({ cmd: 'publish', topic: `$iothub/methods/res/201/?$rid=${rid}`, payload: Buffer.from('{"rebooting":true}'), qos: 0, retain: false, dup: false } as mqttPacket.IPublishPacket)
    expect(JSON.parse((await call).stdout)).toEqual({ status: 201, payload: { rebooting: true } })
    await device.disconnect()
    await until(async () => (await t.rest('GET', '/devices/cli-method')).body.connectionState, (s) => s === 'Disconnected')
    expect(await failure(['invoke', 'cli-method', 'reboot'])).toEqual({ code: 1, stderr: 'hyperhub: the hub answered 404, DeviceNotOnline: Device cli-method is not online, or not subscribed to direct methods\n' })
    expect(await failure(['invoke', 'cli-method', 'reboot', '--timeout', '1'])).toEqual({ code: 2, stderr: 'hyperhub: --timeout must be a whole number from 5 to 300, not "1"\n' })
  })

  it('sends a C2D message with properties that the device receives', async () => {
    const device = await connectDevice(t, 'cli-c2d')
    await device.subscribe('devices/cli-c2d/messages/devicebound/#', 1)
    const sent = JSON.parse((await cli('--json', 'c2d', 'send', 'cli-c2d', '--data', 'hello', '--props', 'kind=cmd;level=3', '--message-id', 'm-1', '--ack', 'full')).stdout)
    expect(sent).toMatchObject({ deviceId: 'cli-c2d', messageId: 'm-1' })
    const got = await until(() => publishesSoFar(device, 'devices/cli-c2d/'), (l) => l.length >= 1)
    expect(got[0]!.payload.toString()).toBe('hello')
    expect(decodeURIComponent(got[0]!.topic)).toMatch(/kind=cmd&level=3/)
    expect(decodeURIComponent(got[0]!.topic)).toContain('$.mid=m-1')
    device.send({ cmd: 'puback', messageId: got[0]!.messageId } as mqttPacket.IPubackPacket)
    expect(await failure(['c2d', 'send', 'cli-c2d', '--props', 'novalue'])).toEqual({ code: 2, stderr: 'hyperhub: --props must be key=value pairs separated by ";", not "novalue"\n' })
    expect(await failure(['c2d', 'send', 'nobody', '--data', 'x'])).toMatchObject({ code: 1, stderr: expect.stringMatching(/^hyperhub: the hub answered 404, DeviceNotFound: /) })
    await device.disconnect()
  })
})

/** A long-running command as a child process, with its output as it comes. */
function spawnCli(args: string[]) {
  const child = spawn(process.execPath, [...CLI, '--data-dir', t.dataDir, ...args], { env: env() })
  let stdout = '', stderr = ''
  child.stdout.on('data', (c: Buffer) => { stdout += c })
  child.stderr.on('data', (c: Buffer) => { stderr += c })
  const exited = new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? -1)))
  return { child, exited, stdout: () => stdout, stderr: () => stderr }
}

describe('hyperhub monitor-events', () => {
  it('prints one device\'s new messages with their properties, in order, and stops at --count', async () => {
    const a = await connectDevice(t, 'cli-mon-a')
    const b = await connectDevice(t, 'cli-mon-b')
    await a.publish('devices/cli-mon-a/messages/events/', '{"before":true}', 1)
    const monitor = spawnCli(['--json', 'monitor-events', '--device-id', 'cli-mon-a', '--count', '2', '-p', 'app', 'anno'])
    await until(() => monitor.stderr(), (s) => s.includes('Monitoring events'), 20_000)
    expect(monitor.stderr()).toBe('Monitoring events from device cli-mon-a (consumer group $Default, from latest); Ctrl-C stops.\n')
    await b.publish('devices/cli-mon-b/messages/events/', '{"other":1}', 1)
    await a.publish('devices/cli-mon-a/messages/events/level=high', '{"temperature":21.5}', 1)
    await a.publish('devices/cli-mon-a/messages/events/', 'plain text', 1)
    await a.publish('devices/cli-mon-a/messages/events/', '{"after":true}', 1)
    expect(await monitor.exited).toBe(0)
    const lines = monitor.stdout().trim().split('\n').map((l) => JSON.parse(l).event)
    expect(lines.map((e) => [e.origin, e.payload])).toEqual([['cli-mon-a', { temperature: 21.5 }], ['cli-mon-a', 'plain text']])
    expect(lines[0].properties).toEqual({ application: { level: 'high' } })
    expect(lines[0].annotations).toMatchObject({ 'iothub-connection-device-id': 'cli-mon-a', 'iothub-message-source': 'Telemetry', 'x-opt-sequence-number': expect.any(Number) })
    await a.disconnect()
    await b.disconnect()
  })

  it('reads from the earliest event as a consumer group, and names an unknown group', async () => {
    await t.rest('PUT', '/messages/events/consumergroups/cli-group')
    const a = await connectDevice(t, 'cli-mon-early')
    await a.publish('devices/cli-mon-early/messages/events/', '{"n":1}', 1)
    const { stdout } = await cli('--json', 'monitor-events', '--device-id', 'cli-mon-early', '--cg', 'cli-group', '--from', 'earliest', '--count', '1')
    expect(JSON.parse(stdout).event.payload).toEqual({ n: 1 })
    expect(await failure(['monitor-events', '--cg', 'no-such-group'])).toMatchObject({ code: 1, stderr: expect.stringMatching(/^hyperhub: the hub answered 404, .*no-such-group/) })
    await a.disconnect()
  })
})

describe('hyperhub simulate and usage', () => {
  it('creates the devices, sends the messages over MQTT/TLS with every one acknowledged, and they reach the built-in endpoint', async () => {
    const { stdout, stderr } = await cli('--json', 'simulate', '--devices', '3', '--rate', '200', '--messages', '60', '--prefix', 'cli-sim-')
    expect(JSON.parse(stdout)).toMatchObject({ devices: 3, sent: 60, acked: 60 })
    expect(stderr).toMatch(/messages .* 60\/60 sent/)
    const events = await readAllEvents(t)
    const counts = ['cli-sim-0001', 'cli-sim-0002', 'cli-sim-0003'].map((id) => eventsOf(events, id).length)
    expect(counts).toEqual([20, 20, 20])
    const first = JSON.parse(Buffer.from(eventsOf(events, 'cli-sim-0001')[0]!.body, 'base64').toString())
    expect(first).toMatchObject({ deviceId: 'cli-sim-0001', seq: 0, temperature: expect.any(Number) })
    expect(await failure(['simulate', '--devices', '0'])).toEqual({ code: 2, stderr: 'hyperhub: --devices must be a whole number from 1 to 10000, not "0"\n' })
    expect(await failure(['simulate', '--prefix', 'bad/id'])).toEqual({ code: 2, stderr: 'hyperhub: --prefix may hold only the characters a device id may, not "bad/id"\n' })
  })

  it('keeps a device that sends less often than its keep-alive connected: it pings', async () => {
    // 5 devices at 1 message a second: each sends every 5 s, past the hub's 1.5 × 2 s of allowed silence
    const { stdout } = await cli('--json', 'simulate', '--devices', '5', '--rate', '1', '--messages', '8', '--keepalive', '2', '--prefix', 'cli-ping-')
    expect(JSON.parse(stdout)).toMatchObject({ devices: 5, sent: 8, acked: 8 })
  }, 60_000)

  it('prints the tier, the quota and the throttles', async () => {
    const usage = JSON.parse((await cli('--json', 'usage')).stdout)
    expect(usage).toMatchObject({ tier: 'unlimited', quota: { used: expect.any(Number), quota: null }, throttles: { d2c: { perSecond: null } } })
    const text = (await cli('usage')).stdout
    expect(text).toMatch(/^tier +unlimited × 1$/m)
    expect(text).toMatch(/^THROTTLE +LIMIT\/S +ADMITTED +QUEUED +REFUSED \(429\)$/m)
  })
})

describe('hyperhub with no hub or a bad target', () => {
  it('names a stopped hub, a missing data directory, a bad connection string and an untrusted CA', async () => {
    const stopped = await startTestHub({}, { dataDir: tempDir() })
    const dir = stopped.dataDir
    await stopped.stop()
    // the stopped hub removed its hub-running.json: the CLI dials the default port and is refused
    expect(existsSync(join(dir, 'hub-running.json'))).toBe(false)
    expect(await failure(['device', 'list', '--ca', join(dir, 'nope.pem')], dir)).toMatchObject({ code: 2, stderr: expect.stringMatching(/^hyperhub: cannot read the CA file .*nope\.pem \(ENOENT\)\n$/) })
    const refused = await failure(['device', 'list', '--hub', '127.0.0.1:1'], dir)
    expect(refused).toEqual({ code: 1, stderr: `hyperhub: the hub is not running: connection refused at https://127.0.0.1:1 (no running hub recorded in ${dir}); start it with "npx hyperhub start"\n` })
    expect(await failure(['device', 'list'], `${dir}-missing`)).toEqual({ code: 2, stderr: `hyperhub: no hub data in ${dir}-missing (has the hub been started there? --data-dir or HYPERHUB_DATA_DIR names it)\n` })
    expect(existsSync(`${dir}-missing`)).toBe(false)
    expect(await failure(['-l', 'HostName=localhost;SharedAccessKey=abc', 'device', 'list'])).toEqual({ code: 2, stderr: 'hyperhub: the connection string has no SharedAccessKeyName (a service connection string looks like HostName=<host>;SharedAccessKeyName=<policy>;SharedAccessKey=<key>)\n' })
    // a connection string with the hub's own key, without its CA: the certificate is not trusted
    const owner = `HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=${t.policyKey('iothubowner')}`
    expect(await failure(['-l', owner, '--hub', `127.0.0.1:${t.hub.ports.https}`, 'device', 'list'])).toMatchObject({ code: 1, stderr: expect.stringMatching(/^hyperhub: the hub's certificate is not trusted \((UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN)\) at https:\/\/127\.0\.0\.1:\d+: pass --ca <the hub's ca\.pem> or set NODE_EXTRA_CA_CERTS\n$/) })
    // and with it, the same connection string works
    const ok = await run(process.execPath, [...CLI, '-l', owner, '--hub', `127.0.0.1:${t.hub.ports.https}`, '--ca', join(t.dataDir, 'tls', 'ca.pem'), '--json', 'device', 'list'], { env: env() })
    expect(Array.isArray(JSON.parse(ok.stdout))).toBe(true)
    expect(await failure(['--policy', 'nope', 'device', 'list'])).toEqual({ code: 2, stderr: 'hyperhub: no policy nope in ' + t.dataDir + ' (policies: iothubowner, service, device, registryRead, registryReadWrite)\n' })
    expect(await failure(['-l', owner.replace(/SharedAccessKey=.+$/, 'SharedAccessKey=d3Jvbmc='), '--hub', `127.0.0.1:${t.hub.ports.https}`, '--ca', join(t.dataDir, 'tls', 'ca.pem'), 'device', 'list'])).toMatchObject({ code: 1, stderr: expect.stringMatching(/^hyperhub: the hub answered 401, IotHubUnauthorized: /) })
  })

  it('hyperhub start runs the hub, which the other commands then find through its data directory', async () => {
    const dir = tempDir()
    const hub = spawn(process.execPath, ['src/cli/bin.mjs', 'start', '--data-dir', dir, '--https-port', '0', '--mqtt-port', '0', '--amqp-port', 'off', '--host', '127.0.0.1', '--log-level', 'warn'], { env: env() })
    let banner = ''
    hub.stdout.on('data', (c: Buffer) => { banner += c })
    const exited = new Promise<number | null>((resolve) => hub.on('exit', (code) => resolve(code)))
    try {
      await until(() => banner, (b) => b.includes('Hyperhub is running.'), 30_000)
      const info = JSON.parse(readFileSync(join(dir, 'hub-running.json'), 'utf8'))
      expect(info).toMatchObject({ pid: hub.pid, hostName: 'localhost', host: '127.0.0.1', ports: { https: expect.any(Number), mqtt: expect.any(Number), amqp: null } })
      await run(process.execPath, [...CLI, '--data-dir', dir, 'device', 'create', 'started-dev'], { env: env() })
      expect((await run(process.execPath, [...CLI, '--data-dir', dir, 'device', 'list'], { env: env() })).stdout).toMatch(/^started-dev +enabled/m)
      hub.kill('SIGTERM')
      expect(await exited).toBe(0)
    } finally {
      hub.kill('SIGKILL') // a no-op once it has exited; a failed step must not leave a hub running
    }
    expect(existsSync(join(dir, 'hub-running.json'))).toBe(false)
  }, 60_000)
})

describe('hyperhub against what a review tried', () => {
  it('prints a --json answer larger than a pipe holds in full (it used to stop at 64 KiB)', async () => {
    const ids = Array.from({ length: 300 }, (_, i) => `cli-many-${String(i).padStart(4, '0')}`)
    for (let i = 0; i < ids.length; i += 100) {
      const r = await t.rest('POST', '/devices?api-version=2021-04-12', { body: ids.slice(i, i + 100).map((id) => ({ id, importMode: 'create' })) })
      expect(r.body.isSuccessful).toBe(true)
    }
    // through a real pipe (the test's own stdio are socket pairs, which hold more): what the pipe has not
    // taken when the command ends must not be dropped
    const { stdout } = await run('sh', ['-c', '"$@" | cat', 'sh', process.execPath, ...CLI, '--data-dir', t.dataDir, '--json', 'device', 'list'], { env: env(), maxBuffer: 64 * 1024 * 1024 })
    expect(stdout.length).toBeGreaterThan(65_536)
    const listed = new Set((JSON.parse(stdout) as { deviceId: string }[]).map((d) => d.deviceId))
    expect(ids.every((id) => listed.has(id))).toBe(true)
  })

  it('an explicit --data-dir beats HYPERHUB_CONNECTION_STRING, and IOTHUB_CONNECTION_STRING (a real Azure hub, usually) is never read', async () => {
    const elsewhere = 'HostName=127.0.0.1:1;SharedAccessKeyName=iothubowner;SharedAccessKey=d3Jvbmc='
    const withEnv = (extra: Record<string, string>, args: string[]) => run(process.execPath, [...CLI, ...args], { env: { ...env(), ...extra } })
    expect(JSON.parse((await withEnv({ HYPERHUB_CONNECTION_STRING: elsewhere }, ['--data-dir', t.dataDir, '--json', 'usage'])).stdout).tier).toBe('unlimited')
    expect(JSON.parse((await withEnv({ IOTHUB_CONNECTION_STRING: elsewhere, HYPERHUB_DATA_DIR: t.dataDir }, ['--json', 'usage'])).stdout).tier).toBe('unlimited')
    // without --data-dir on the command line, HYPERHUB_CONNECTION_STRING is the target
    await expect(withEnv({ HYPERHUB_CONNECTION_STRING: elsewhere, HYPERHUB_DATA_DIR: t.dataDir }, ['usage'])).rejects.toMatchObject({ code: 1, stderr: 'hyperhub: the hub is not running: connection refused at https://127.0.0.1:1; start it with "npx hyperhub start"\n' })
  })

  it('refuses the ids "." and "..", which URL parsing would fold into another path', async () => {
    await t.createDevice('cli-dots')
    const refusal = (id: string) => ({ code: 2, stderr: `hyperhub: the id ${JSON.stringify(id)} cannot be named in a URL (it is a path step); rename the device or module\n` })
    expect(await failure(['device', 'show', '.'])).toEqual(refusal('.'))
    expect(await failure(['device', 'delete', '..'])).toEqual(refusal('..'))
    // the module "..": it would have called the device's own method
    expect(await failure(['invoke', 'cli-dots', 'reboot', '--module', '..'])).toEqual(refusal('..'))
    expect(await failure(['c2d', 'send', '..', '--data', 'x'])).toEqual(refusal('..'))
  })

  it('shows what a device sends with its controls escaped, never obeyed by the terminal', async () => {
    const d = await connectDevice(t, 'cli-ctl')
    await d.publish('devices/cli-ctl/messages/events/', 'x', 1)
    const monitor = cli('--json', 'monitor-events', '--device-id', 'cli-ctl', '--from', 'earliest', '--count', '2', '-p', 'app')
    await d.publish(`devices/cli-ctl/messages/events/${encodeURIComponent('k\u009b')}=${encodeURIComponent('\u202eevil')}`, '{"t":"\u001b[2J\u009b31m"}', 1)
    const { stdout } = await monitor
    expect(stdout).not.toMatch(/[\u001b\u009b\u202e]/)
    const second = JSON.parse(stdout.trim().split('\n')[1]!).event
    // raw controls make it text, not JSON: shown as a string, the controls escaped
    expect(second.payload).toBe('{"t":"\u001b[2J\u009b31m"}')
    expect(second.properties.application).toEqual({ 'k\u009b': '\u202eevil' })
    await d.disconnect()
  })

  it('stops reading an answer past 16 MB (a server that is not a hub streams one without end)', async () => {
    const pki = join(process.cwd(), '.test-pki')
    let written = 0
    const fake = https.createServer({ key: readFileSync(join(pki, 'server.key')), cert: readFileSync(join(pki, 'server.pem')) }, (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      const chunk = Buffer.alloc(1024 * 1024, 0x20)
      // at most 64 MB, in the stream's own time: the CLI must give up long before
      const more = () => { while (written < 64 * 1024 * 1024 && res.write(chunk)) written += chunk.length; if (written < 64 * 1024 * 1024) res.once('drain', more); else res.end() }
      more()
      res.on('close', () => res.destroy())
    })
    await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve))
    const port = (fake.address() as { port: number }).port
    try {
      const r = await failure(['-l', 'HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=eA==', '--hub', `127.0.0.1:${port}`, '--ca', join(pki, 'ca.pem'), 'device', 'list'])
      expect(r).toEqual({ code: 1, stderr: `hyperhub: the answer from https://127.0.0.1:${port} is larger than 16 MB; is that a hub?\n` })
      expect(written).toBeLessThan(64 * 1024 * 1024)
    } finally {
      fake.closeAllConnections()
      await new Promise((resolve) => fake.close(resolve))
    }
  })

  it('refuses C2D properties and headers HTTP cannot carry as a bad option', async () => {
    expect(await failure(['c2d', 'send', 'cli-c2d', '--props', 'a b=1'])).toEqual({ code: 2, stderr: 'hyperhub: --props: "a b" cannot be a property name (letters, digits and !#$%&\'*+.^_`|~- only)\n' })
    expect(await failure(['c2d', 'send', 'cli-c2d', '--props', 'k=é'])).toEqual({ code: 2, stderr: 'hyperhub: --props: the value of k must be printable ASCII, not "é"\n' })
    expect(await failure(['c2d', 'send', 'cli-c2d', '--message-id', 'm\n1'])).toEqual({ code: 2, stderr: 'hyperhub: --message-id must be printable ASCII, not "m\\n1"\n' })
  })

  it('simulate keeps the key of a device that existed before it', async () => {
    const existing = await t.createDevice('cli-keep-0001')
    const { stdout } = await cli('--json', 'simulate', '--devices', '2', '--messages', '4', '--rate', '100', '--prefix', 'cli-keep-')
    expect(JSON.parse(stdout)).toMatchObject({ sent: 4, acked: 4 })
    expect(t.hub.registry.get('cli-keep-0001')!.authentication.symmetricKey.primaryKey).toBe(existing.primaryKey)
  })

  it('trusts a run file only for a live process on this machine, and a second hub on the data directory is refused', async () => {
    const dir = tempDir()
    const other = await startTestHub({}, { dataDir: dir })
    try {
      const file = join(dir, 'hub-running.json')
      const real = readFileSync(file, 'utf8')
      // a remote address: the owner's token would go there
      writeFileSync(file, JSON.stringify({ ...JSON.parse(real), pid: process.pid, host: '203.0.113.9' }))
      expect(await failure(['device', 'list'], dir)).toEqual({ code: 2, stderr: `hyperhub: ${file} names 203.0.113.9, which is not an address of this machine; refusing to send the hub's keys there\n` })
      writeFileSync(file, '{"pid":1}')
      expect(await failure(['device', 'list'], dir)).toEqual({ code: 2, stderr: `hyperhub: ${file} is not a hub's run file (remove it if no hub runs there)\n` })
      // a process that has ended: as if no hub ran
      writeFileSync(file, JSON.stringify({ ...JSON.parse(real), pid: 2 ** 22 + 12345 }))
      expect(await failure(['device', 'list'], dir)).toMatchObject({ code: 1, stderr: expect.stringContaining(`connection refused at https://127.0.0.1:443 (no running hub recorded in ${dir})`) })
      writeFileSync(file, real)
      // the hub of this test process holds the data directory's lock: a second one does not start beside it
      const second = spawn(process.execPath, ['src/cli/bin.mjs', 'start', '--data-dir', dir, '--https-port', '0', '--mqtt-port', '0', '--amqp-port', 'off', '--host', '127.0.0.1'], { env: env() })
      let stderr = ''
      second.stderr.on('data', (c: Buffer) => { stderr += c })
      expect(await new Promise((resolve) => second.on('exit', resolve))).toBe(2)
      expect(stderr).toBe(`hyperhub: another hub (process ${process.pid}) is running on ${dir}; stop it first (if no hub runs there, remove ${join(dir, 'hub.lock')})\n`)
    } finally {
      await other.stop()
    }
    // a lock left by a crash names a pid that is alive again, but is another process (pid 1, started at boot): taken over
    writeFileSync(join(dir, 'hub.lock'), JSON.stringify({ pid: 1, started: '1' }))
    const again = spawn(process.execPath, ['src/cli/bin.mjs', 'start', '--data-dir', dir, '--https-port', '0', '--mqtt-port', '0', '--amqp-port', 'off', '--host', '127.0.0.1', '--log-level', 'warn'], { env: env() })
    let banner = ''
    again.stdout.on('data', (c: Buffer) => { banner += c })
    try {
      await until(() => banner, (b) => b.includes('Hyperhub is running.'), 30_000)
      expect(JSON.parse(readFileSync(join(dir, 'hub.lock'), 'utf8')).pid).toBe(again.pid)
    } finally {
      again.kill('SIGKILL')
    }
  }, 90_000)
})

describe('hyperhub token', () => {
  it('prints policy, device and role tokens the hub accepts, and refuses a bad --ttl', async () => {
    const service = (await cli('--policy', 'service', 'token')).stdout.trim()
    expect(service).toMatch(/^SharedAccessSignature sr=localhost&sig=.+&skn=service&se=\d+$/)
    expect((await t.rest('GET', '/messages/events/partitions', { token: service })).status).toBe(200)
    expect((await t.rest('GET', '/devices/', { token: service })).status).toBe(401)
    await t.createDevice('cli-tok')
    const password = (await cli('token', '--device', 'cli-tok')).stdout.trim()
    const { client, connack } = await MqttTestClient.connect({ port: t.hub.ports.mqttTcp!, clientId: 'cli-tok', password })
    expect(connack.returnCode).toBe(0)
    await client.disconnect()
    const bearer = (await cli('token', '--role', 'IoT Hub Registry Contributor')).stdout.trim()
    expect((await t.rest('GET', '/devices/', { token: `Bearer ${bearer}` })).status).toBe(200)
    for (const ttl of ['abc', '0', '-5', '1.5', '99999999999']) {
      expect(await failure(['token', `--ttl=${ttl}`])).toEqual({ code: 2, stderr: `hyperhub: --ttl must be a whole number from 1 to 31536000, not ${JSON.stringify(ttl)}\n` })
    }
    expect(await failure(['token', '--device', 'nobody'])).toEqual({ code: 1, stderr: `hyperhub: no device nobody in ${t.dataDir}\n` })
    expect(await failure(['token', '--role', 'Data Wizard'])).toMatchObject({ code: 2, stderr: expect.stringContaining("unknown role 'Data Wizard'") })
  })
})

describe('naming mode', () => {
  it('a hub named myhub.azure-devices.net has a certificate and tokens for that name, which the CLI uses from a connection string', async () => {
    const named = await startTestHub({ azureHubName: 'myhub', hostName: 'myhub.azure-devices.net' })
    try {
      const owner = `HostName=myhub.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey=${named.policyKey('iothubowner')}`
      // what a tool with a hosts-file line does: dial this machine, check the certificate for the Azure name
      const args = [...CLI, '-l', owner, '--hub', `127.0.0.1:${named.hub.ports.https}`, '--ca', join(named.dataDir, 'tls', 'ca.pem')]
      await run(process.execPath, [...args, 'device', 'create', 'named-dev'], { env: env() })
      const cs = (await run(process.execPath, [...args, 'device', 'connection-string', 'named-dev'], { env: env() })).stdout
      // from a connection string the CLI knows no MQTT port but the SDKs' 8883
      expect(cs).toMatch(/^HostName=myhub\.azure-devices\.net;DeviceId=named-dev;SharedAccessKey=/)
      const token = (await run(process.execPath, [...args, 'token'], { env: env() })).stdout.trim()
      expect(token).toMatch(/^SharedAccessSignature sr=myhub\.azure-devices\.net&sig=/)
    } finally {
      await named.stop()
    }
  })
})
