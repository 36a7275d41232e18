// The servers under test, each started fresh for a run and stopped by PID: Hyperhub (the real hub
// process), aedes and mosquitto, all on 127.0.0.1.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createSasToken } from '../../src/auth/sas-token.js'
import type { ReaderConfig } from './backend-reader.js'
import { deviceIds, hubCredentials, provisionDevices } from './provision.js'
import type { DeviceCredentials } from './publisher.js'
import type { Target, TransportKind } from './transport.js'

export type ServerName = 'hyperhub' | 'aedes' | 'mosquitto'

export interface RunningServer {
  name: ServerName
  label: string
  pid: number
  target(transport: TransportKind): Target
  devices(count: number, prefix?: string): Promise<DeviceCredentials[]>
  reader(): ReaderConfig
  stop(): Promise<void>
}

const PORTS = { mqttTcp: 18931, mqttTls: 18983, https: 18943 }
const DEVICE_KEY = Buffer.from('hyperhub-bench-shared-device-key').toString('base64')

function waitFor(child: ChildProcess, output: () => string, pattern: RegExp, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + 60_000
    const tick = () => {
      if (pattern.test(output())) return resolve()
      if (child.exitCode !== null || Date.now() > deadline) return reject(new Error(`${what} did not start:\n${output().slice(-2000)}`))
      setTimeout(tick, 50)
    }
    tick()
  })
}

function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null) return Promise.resolve()
  return new Promise((resolve) => {
    const t = setTimeout(() => child.kill('SIGKILL'), 15_000)
    child.once('exit', () => { clearTimeout(t); resolve() })
    child.kill(signal)
  })
}

export async function startHyperhub(args: string[] = []): Promise<RunningServer> {
  const dataDir = mkdtempSync(join(tmpdir(), 'hyperhub-bench-'))
  // HYPERHUB_BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" profiles the hub under load
  const nodeArgs = process.env.HYPERHUB_BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? []
  const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', 'src/main.ts', '--data-dir', dataDir, '--host', '127.0.0.1',
    '--mqtt-port', String(PORTS.mqttTls), '--https-port', String(PORTS.https), '--mqtt-tcp-port', String(PORTS.mqttTcp), '--amqp-port', 'off', '--log-level', 'warn', ...args],
  { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout!.on('data', (d: Buffer) => { out += d })
  child.stderr!.on('data', (d: Buffer) => { out += d })
  await waitFor(child, () => out, /Trust the hub's local CA/, 'Hyperhub')
  const ownerKey = /SharedAccessKeyName=iothubowner;SharedAccessKey=(\S+)/.exec(out)![1]!
  const ca = readFileSync(join(dataDir, 'tls', 'ca.pem'), 'utf8')
  const serviceKey = ownerKey
  let provisioned = new Set<string>()
  return {
    name: 'hyperhub', label: `Hyperhub${args.length ? ` ${args.join(' ')}` : ''}`, pid: child.pid!,
    target: (transport) => ({ host: '127.0.0.1', transport, ca, port: transport === 'tcp' ? PORTS.mqttTcp : transport === 'tls' ? PORTS.mqttTls : PORTS.https }),
    async devices(count, prefix = 'dev-') {
      const ids = deviceIds(count, prefix)
      const missing = ids.filter((id) => !provisioned.has(id))
      if (missing.length) await provisionDevices({ httpsPort: PORTS.https, ownerKey, ids: missing, deviceKey: DEVICE_KEY })
      provisioned = new Set([...provisioned, ...missing])
      return ids.map((id) => hubCredentials(id, DEVICE_KEY))
    },
    reader: () => ({ kind: 'hub-stream', httpsPort: PORTS.https, ca, token: createSasToken('localhost', serviceKey, 'iothubowner', 6 * 3600) }),
    async stop() {
      await stopChild(child, 'SIGTERM')
      rmSync(dataDir, { recursive: true, force: true })
    },
  }
}

function plainBroker(name: ServerName, label: string, child: ChildProcess, cleanup: () => void): RunningServer {
  return {
    name, label, pid: child.pid!,
    target: (transport) => {
      if (transport !== 'tcp') throw new Error(`${name} is measured over plain TCP only`)
      return { host: '127.0.0.1', port: PORTS.mqttTcp, transport }
    },
    devices: async (count, prefix = 'dev-') => deviceIds(count, prefix).map((id) => ({ clientId: id, topic: `devices/${id}/messages/events/` })),
    reader: () => ({ kind: 'mqtt-subscriber', target: { host: '127.0.0.1', port: PORTS.mqttTcp, transport: 'tcp' }, filter: 'devices/+/messages/events/#', clientId: 'bench-backend' }),
    async stop() {
      await stopChild(child)
      cleanup()
    },
  }
}

export async function startAedes(): Promise<RunningServer> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/peers/aedes-server.ts', String(PORTS.mqttTcp)], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout!.on('data', (d: Buffer) => { out += d })
  child.stderr!.on('data', (d: Buffer) => { out += d })
  await waitFor(child, () => out, /aedes listening/, 'aedes')
  return plainBroker('aedes', 'aedes', child, () => {})
}

export const MOSQUITTO = '/usr/sbin/mosquitto'

/** mosquitto with persistence off; `unlimited` lifts its in-flight and queue limits (it drops otherwise). */
export async function startMosquitto(unlimited = false): Promise<RunningServer> {
  if (!existsSync(MOSQUITTO)) throw new Error('mosquitto is not installed: npm run bench:peers installs it (apt-get install mosquitto)')
  const dir = mkdtempSync(join(tmpdir(), 'mosquitto-bench-'))
  const conf = join(dir, 'mosquitto.conf')
  writeFileSync(conf, [
    'per_listener_settings false', `listener ${PORTS.mqttTcp} 127.0.0.1`, 'allow_anonymous true', 'persistence false',
    'log_dest stdout', 'log_type error', 'log_type warning', 'connection_messages false',
    ...(unlimited ? ['max_inflight_messages 0', 'max_queued_messages 0'] : []), '',
  ].join('\n'))
  const child = spawn(MOSQUITTO, ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] })
  await new Promise((r) => setTimeout(r, 300))
  if (child.exitCode !== null) throw new Error('mosquitto exited at start')
  return plainBroker('mosquitto', unlimited ? 'mosquitto (limits off)' : 'mosquitto', child, () => rmSync(dir, { recursive: true, force: true }))
}

export function versions(): Record<string, string> {
  const v: Record<string, string> = { node: process.version }
  try { v.mosquitto = execFileSync(MOSQUITTO, ['-h'], { encoding: 'utf8' }).split('\n')[0]!.replace('mosquitto version ', '') } catch (e) {
    const m = /mosquitto version (\S+)/.exec(String((e as { stdout?: string }).stdout ?? ''))
    if (m) v.mosquitto = m[1]!
  }
  try { v.aedes = JSON.parse(readFileSync('node_modules/aedes/package.json', 'utf8')).version } catch { /* not installed */ }
  v.hyperhub = JSON.parse(readFileSync('package.json', 'utf8')).version
  return v
}
