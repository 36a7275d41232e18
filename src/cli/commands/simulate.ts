// `hyperhub simulate`: N devices sending telemetry at a rate, as a quick load or a demo feed. The
// devices (`<prefix>0001`…) are created through the bulk registry API (one key for the new ones;
// devices that exist keep theirs), then connect over MQTT/TLS. QoS 1 by default: a message counts as
// delivered when its PUBACK came, and the command fails if any was not.
import { randomBytes } from 'node:crypto'
import { Command, Option } from 'commander'
import cliProgress from 'cli-progress'
import { createSasToken } from '../../auth/sas-token.js'
import { action } from '../hyperhub.js'
import { CliError, fields, intOption, json, segment } from '../output.js'
import { SimulatedDevice } from '../simulated-device.js'
import type { ServiceClient } from '../service-client.js'

const BULK = 100
/** unacknowledged messages per device: past it the device waits (the hub is behind) */
const WINDOW = 32
const TICK_MS = 20

function progressBar(label: string, total: number) {
  const bar = new cliProgress.SingleBar({
    format: `${label} {bar} {value}/{total} {unit} | {extra}`, stream: process.stderr, hideCursor: true,
    // not a terminal: a line every 2 s instead of a redrawn bar
    noTTYOutput: !process.stderr.isTTY, notTTYSchedule: 2000, fps: 5,
  }, cliProgress.Presets.shades_classic)
  bar.start(total, 0, { unit: '', extra: '' })
  return bar
}

/** Each device's key: `key` for the ones created here, their own for those that existed (a real device named like a simulated one is not locked out). */
async function provision(client: ServiceClient, ids: string[], key: string): Promise<Map<string, string>> {
  const keys = new Map<string, string>()
  const bar = progressBar('devices ', ids.length)
  try {
    for (let i = 0; i < ids.length; i += BULK) {
      const batch = ids.slice(i, i + BULK)
      const items = batch.map((id) => ({ id, importMode: 'create', status: 'enabled', authentication: { type: 'sas', symmetricKey: { primaryKey: key, secondaryKey: key } } }))
      const { body } = await client.call<{ isSuccessful: boolean; errors: { deviceId: string; errorCode: string; errorStatus: string }[] }>('POST', '/devices', { body: items })
      const existing = new Set<string>()
      for (const e of body.errors) {
        if (e.errorCode !== 'DeviceAlreadyExists') throw new CliError(`creating ${e.deviceId} failed: ${e.errorCode} ${e.errorStatus}`, 1)
        existing.add(e.deviceId)
      }
      for (const id of batch) {
        if (!existing.has(id)) { keys.set(id, key); continue }
        const { body: d } = await client.call<{ authentication: { symmetricKey?: { primaryKey: string | null } } }>('GET', `/devices/${segment(id)}`)
        const own = d.authentication.symmetricKey?.primaryKey
        if (!own) throw new CliError(`device ${id} exists and uses X.509; choose another --prefix`, 1)
        keys.set(id, own)
      }
      bar.update(Math.min(i + BULK, ids.length), { unit: 'ready' })
    }
  } finally {
    bar.stop()
  }
  return keys
}

export function simulateCommand(): Command {
  return new Command('simulate')
    .description('simulate devices that send telemetry at a rate, with a progress line')
    .option('-n, --devices <n>', 'how many devices (1..10000)', '10')
    .option('-r, --rate <msgs>', 'messages per second, all devices together (1..100000)', '10')
    .option('--duration <seconds>', 'how long to send (1..86400)', '10')
    .option('--messages <n>', 'stop after this many messages instead')
    .option('--prefix <text>', 'device ids are <prefix>0001, <prefix>0002, …', 'sim-')
    .addOption(new Option('--qos <qos>', 'MQTT QoS').choices(['0', '1']).default('1'))
    .option('--keepalive <seconds>', 'the devices\' MQTT keep-alive (they ping at half of it; the hub drops one silent for 1.5 × it)', '60')
    .action(action(async (ctx, o: { devices: string; rate: string; duration: string; messages?: string; prefix: string; qos: '0' | '1'; keepalive: string }) => {
      const count = intOption('--devices', o.devices, 1, 10_000)
      const rate = intOption('--rate', o.rate, 1, 100_000)
      const duration = intOption('--duration', o.duration, 1, 86_400)
      const total = o.messages === undefined ? rate * duration : intOption('--messages', o.messages, 1, 1_000_000_000)
      if (!/^[A-Za-z0-9\-.+%_#*?!(),:=@$']{1,100}$/.test(o.prefix)) throw new CliError(`--prefix may hold only the characters a device id may, not ${JSON.stringify(o.prefix)}`)
      const qos = Number(o.qos) as 0 | 1
      const keepaliveSeconds = intOption('--keepalive', o.keepalive, 2, 1767)
      const client = ctx.client()
      const target = client.target
      const ids = Array.from({ length: count }, (_, i) => `${o.prefix}${String(i + 1).padStart(4, '0')}`)
      const keys = await provision(client, ids, randomBytes(32).toString('base64'))
      // how long the run should take, and how long it may: a hub that stops acknowledging ends it
      const expectedSeconds = total / rate
      const deadlineSeconds = expectedSeconds + 30

      let failure: Error | undefined
      const devices: SimulatedDevice[] = []
      const connecting = progressBar('connect ', count)
      try {
        // 32 handshakes at a time: a fleet connects quickly without a TLS storm on the hub
        for (let i = 0; i < ids.length; i += 32) {
          devices.push(...await Promise.all(ids.slice(i, i + 32).map((id) => SimulatedDevice.connect({
            host: target.address, port: target.mqttPort, servername: target.servername, ca: target.ca,
            credentials: {
              deviceId: id, username: `${target.hostName}/${id}/?api-version=2021-04-12`, topic: `devices/${id}/messages/events/`,
              password: createSasToken(encodeURIComponent(`${target.hostName}/devices/${id}`), keys.get(id)!, undefined, Math.ceil(Math.max(3600, deadlineSeconds * 2))),
            },
            keepaliveSeconds,
            onError: (e) => { failure ??= e },
          }))))
          connecting.update(devices.length, { unit: 'connected' })
        }
      } catch (e) {
        connecting.stop()
        await Promise.all(devices.map((d) => d.close()))
        throw new CliError(`${(e as Error).message}`, 1)
      }
      connecting.stop()

      const sending = progressBar('messages', total)
      const started = performance.now()
      let sent = 0
      let turn = 0
      await new Promise<void>((resolve) => {
        const timer = setInterval(() => {
          const elapsed = (performance.now() - started) / 1000
          const due = Math.min(total, Math.floor(elapsed * rate))
          // round robin; a device whose window or socket is full waits its next turn
          for (let skipped = 0; sent < due && skipped < devices.length; turn = (turn + 1) % devices.length) {
            const d = devices[turn]!
            if (!d.open || (qos === 1 && d.inFlight >= WINDOW) || !d.writable) { skipped++; continue }
            skipped = 0
            const body = { deviceId: d.credentials.deviceId, seq: sent, temperature: +(20 + 5 * Math.sin(sent / 50) + Math.random()).toFixed(2), humidity: +(50 + 10 * Math.cos(sent / 70)).toFixed(1) }
            d.send(Buffer.from(JSON.stringify(body)), qos)
            sent++
          }
          const acked = devices.reduce((n, d) => n + d.acked, 0)
          sending.update(sent, { unit: 'sent', extra: `${Math.round(sent / Math.max(elapsed, 0.001))} msg/s${qos ? `, ${acked} acked` : ''}` })
          const lastAcked = qos === 0 || acked >= sent
          if (failure || (sent >= total && lastAcked) || elapsed > deadlineSeconds) {
            clearInterval(timer)
            resolve()
          }
        }, TICK_MS)
      })
      sending.stop()
      const seconds = (performance.now() - started) / 1000
      const acked = devices.reduce((n, d) => n + d.acked, 0)
      await Promise.all(devices.map((d) => d.close()))
      const result = { devices: count, sent, acked: qos ? acked : null, seconds: +seconds.toFixed(2), messagesPerSecond: Math.round(sent / seconds) }
      ctx.print(ctx.options.json ? json(result) : fields(Object.entries(result).map(([k, v]) => [k, v])))
      if (failure) throw new CliError(failure.message, 1)
      if (sent < total) throw new CliError(`only ${sent} of ${total} messages were sent in ${Math.round(seconds)} s: the hub fell behind (${qos ? 'unacknowledged messages filled every device\'s window' : 'the sockets stopped draining'})`, 1)
      if (qos && acked < sent) throw new CliError(`${sent - acked} of ${sent} messages were not acknowledged within 30 s of the end`, 1)
    }))
}
