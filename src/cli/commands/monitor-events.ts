// `hyperhub monitor-events`: the built-in endpoint live, as `az iot hub monitor-events` shows it,
// read from the hub's event stream (a WebSocket that pushes each commit's events in order).
// A slow terminal or pipe pauses the socket, and the hub waits: nothing is held here unbounded.
import { Command, Option } from 'commander'
import WebSocket from 'ws'
import type { EventJson } from '../../events/built-in-endpoint.js'
import { action } from '../hyperhub.js'
import { CliError, intOption, json } from '../output.js'
import { describeConnectError, describeHubError } from '../service-client.js'

type PropertyKind = 'sys' | 'app' | 'anno' | 'all'

/** One event in az's shape: origin, module, interface, component, payload, and the properties asked for. */
export function describeEvent(e: EventJson, kinds: readonly PropertyKind[]): Record<string, unknown> {
  const sys = e.systemProperties
  const text = Buffer.from(e.body, 'base64').toString('utf8')
  let payload: unknown = text
  try { payload = JSON.parse(text) } catch { /* not JSON: shown as text */ }
  const out: Record<string, unknown> = {
    origin: sys['iothub-connection-device-id'] ?? '', module: sys['iothub-connection-module-id'] ?? '',
    interface: sys['dt-dataschema'] ?? '', component: sys['dt-subject'] ?? '', payload,
  }
  const all = kinds.includes('all')
  if (all || kinds.includes('anno')) {
    out.annotations = {
      ...Object.fromEntries(Object.entries(sys).filter(([k]) => k.startsWith('iothub-'))),
      'x-opt-sequence-number': e.sequenceNumber, 'x-opt-offset': e.offset, 'x-opt-enqueued-time': Date.parse(e.enqueuedTimeUtc), 'x-opt-partition-id': e.partitionId,
    }
  }
  const properties: Record<string, unknown> = {}
  if (all || kinds.includes('sys')) properties.system = Object.fromEntries(Object.entries(sys).filter(([k]) => !k.startsWith('iothub-')))
  if (all || kinds.includes('app')) properties.application = e.properties
  if (Object.keys(properties).length) out.properties = properties
  return { event: out }
}

export function monitorEventsCommand(): Command {
  return new Command('monitor-events')
    .description('print device-to-cloud messages as they arrive at the built-in endpoint')
    .option('-d, --device-id <id>', 'only this device\'s messages')
    .option('--cg, --consumer-group <name>', 'the consumer group to read as', '$Default')
    .addOption(new Option('-p, --properties <kinds...>', 'which properties to show').choices(['sys', 'app', 'anno', 'all']))
    .addOption(new Option('--from <where>', 'latest: only new messages; earliest: what the partitions still hold first').choices(['latest', 'earliest']).default('latest'))
    .option('--count <n>', 'stop after this many messages (0: no limit)', '0')
    .option('-t, --timeout <seconds>', 'stop after this many seconds (0: no limit)', '0')
    .action(action(async (ctx, o: { deviceId?: string; consumerGroup: string; properties?: PropertyKind[]; from: string; count: string; timeout: string }) => {
      const count = intOption('--count', o.count, 0, 1_000_000_000)
      const timeoutS = intOption('--timeout', o.timeout, 0, 31_536_000)
      const target = ctx.target()
      const host = target.address.includes(':') ? `[${target.address}]` : target.address
      // one device: only the partition its events land on (the others are not sent to be dropped here)
      const query = new URLSearchParams({ consumerGroup: o.consumerGroup, from: o.from, ...(o.deviceId !== undefined ? { devicePartition: o.deviceId } : {}) })
      // the stream closes when its token expires: one that outlives a working day
      const ws = new WebSocket(`wss://${host}:${target.httpsPort}/messages/events/stream?${query}`, {
        headers: { Authorization: target.serviceToken(86_400) }, ca: target.ca, maxPayload: 16 * 1024 * 1024, handshakeTimeout: 30_000,
        // ws hands this to tls.connect: the certificate names the hub's host name, the dial may be an address
        ...(target.servername ? { servername: target.servername } as object : {}),
      })
      let seen = 0
      let waitingForDrain = false
      await new Promise<void>((resolve, reject) => {
        // a stop does not wait for a close handshake: the socket may be paused behind a slow reader, or the hub stuck
        const stop = () => { clearTimeout(timer); ws.terminate(); resolve() }
        const timer = timeoutS ? setTimeout(stop, timeoutS * 1000) : undefined
        ws.on('unexpected-response', (_req, res) => {
          const chunks: Buffer[] = []
          res.on('data', (c: Buffer) => { if (chunks.length < 16) chunks.push(c) })
          res.on('end', () => reject(new CliError(describeHubError(res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8')), 1)))
        })
        ws.on('error', (e) => reject(describeConnectError(e, target.describe)))
        ws.on('open', () => {
          process.stderr.write(`Monitoring events${o.deviceId ? ` from device ${o.deviceId}` : ''} (consumer group ${o.consumerGroup}, from ${o.from}); Ctrl-C stops.\n`)
        })
        ws.on('message', (data) => {
          let events: EventJson[]
          try {
            events = JSON.parse(String(data)) as EventJson[]
            if (!Array.isArray(events)) throw new Error('not an array')
          } catch {
            ws.terminate()
            return reject(new CliError(`the event stream sent a frame that is not a JSON array of events; is ${target.describe} a hub?`, 1))
          }
          for (const e of events) {
            if (count && seen >= count) break
            if (o.deviceId !== undefined && e.systemProperties['iothub-connection-device-id'] !== o.deviceId) continue
            seen++
            const shown = describeEvent(e, o.properties ?? [])
            const more = process.stdout.write(`${json(shown, ctx.options.json ? 0 : 4)}\n`)
            // a reader slower than the hub: stop reading until what was written has drained (and the hub waits)
            if (!more && !waitingForDrain) {
              waitingForDrain = true
              ws.pause()
              process.stdout.once('drain', () => { waitingForDrain = false; ws.resume() })
            }
          }
          if (count && seen >= count) stop()
        })
        ws.on('close', (code, reason) => {
          clearTimeout(timer)
          if (code === 1000 || code === 1005) return resolve()
          reject(new CliError(`the event stream closed (${code}${reason.length ? `: ${reason}` : ''})`, 1))
        })
        process.once('SIGINT', stop)
      })
    }))
}
