// The real hub as a child process (`node --import tsx src/main.ts`), for crash and shutdown tests.
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import https from 'node:https'
import { join } from 'node:path'
import { createSasToken } from '../../src/auth/sas-token.js'

export interface HubProcess {
  child: ChildProcess
  ports: { https: number; mqttTcp: number; mqtt: number; amqp: number | null }
  /** the Event Hubs-compatible connection string printed at start, when AMQP is on */
  eventHubsConnectionString: string | undefined
  ownerKey: string
  ca: string
  output: () => string
  exited: Promise<number | null>
  rest(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }>
}

export async function spawnHub(dataDir: string, extraArgs: string[] = []): Promise<HubProcess> {
  // HYPERHUB_BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" profiles a hub a benchmark spawns
  const nodeArgs = (process.env.HYPERHUB_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean)
  const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', 'src/main.ts', '--data-dir', dataDir, '--host', '127.0.0.1',
    '--mqtt-port', '0', '--https-port', '0', '--mqtt-tcp-port', '0', '--amqp-port', '0', '--log-level', 'warn', '--allow-private-webhooks', 'true',
    // the blob store starts for the tests and benchmarks that upload or route to storage, not for every hub
    '--blob-store-start', 'first-use', ...extraArgs], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout!.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr!.on('data', (d: Buffer) => { out += d.toString() })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  const deadline = Date.now() + 30_000
  while (!/Trust the hub's local CA/.test(out)) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`hub did not start:\n${out}`)
    await new Promise((r) => setTimeout(r, 50))
  }
  const port = (label: string) => Number(new RegExp(`${label}\\s+port (\\d+)`).exec(out)![1])
  const ownerKey = /SharedAccessKeyName=iothubowner;SharedAccessKey=(\S+)/.exec(out)![1]!
  const ca = readFileSync(join(dataDir, 'tls', 'ca.pem'), 'utf8')
  const amqpMatch = /AMQP over TLS\s+port (\d+)/.exec(out)
  const ports = { https: port('HTTPS \\+ MQTT/WSS'), mqttTcp: port('MQTT over TCP'), mqtt: port('MQTT over TLS'), amqp: amqpMatch ? Number(amqpMatch[1]) : null }
  const eventHubsConnectionString = /(Endpoint=sb:\/\/\S+)/.exec(out)?.[1]
  const rest: HubProcess['rest'] = (method, path, body) => new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port: ports.https, servername: 'localhost', method, path, ca,
      headers: { Authorization: createSasToken('localhost', ownerKey, 'iothubowner'), 'Content-Type': 'application/json' } }, (res) => {
      let text = ''
      res.on('data', (d: Buffer) => { text += d.toString() })
      res.on('end', () => resolve({ status: res.statusCode!, body: text ? JSON.parse(text) : undefined }))
    })
    req.on('error', reject)
    req.end(body === undefined ? undefined : JSON.stringify(body))
  })
  return { child, ports, eventHubsConnectionString, ownerKey, ca, output: () => out, exited, rest }
}

/** Every event of every partition, read through the hub's REST API. */
export async function allEvents(hub: HubProcess): Promise<{ systemProperties: Record<string, string> }[]> {
  const out: { systemProperties: Record<string, string> }[] = []
  const parts = (await hub.rest('GET', '/messages/events/partitions')).body as { partitionId: string }[]
  for (const { partitionId } of parts) {
    for (let from = 0; ;) {
      const page = (await hub.rest('GET', `/messages/events/partitions/${partitionId}/events?fromSequenceNumber=${from}&maxCount=1000`)).body
      out.push(...page.events)
      // a page stops at 1,000 events or 4 MB: the partition ends at the first empty page
      if (page.events.length === 0) break
      from = page.nextSequenceNumber
    }
  }
  return out
}
