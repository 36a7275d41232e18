// A nats-server cluster with JetStream on loopback: N nodes, each its own process, client port and
// store directory, routed to each other. For the cluster tests and benches; `kill(i)` is SIGKILL, so
// a node dies the way a machine would. Usage as a script:
//   npx tsx bench/cluster/nats-cluster.ts [--nodes 3]   (prints the client URLs; Ctrl-C stops it)
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { jetstreamManager } from '@nats-io/jetstream'
import type { NatsConnection } from '@nats-io/transport-node'

export interface NatsNode { name: string; clientPort: number; routePort: number; storeDir: string; process: ChildProcess | undefined; output: string }

/** The nats-server to run (installed by install-nats.sh if need be). */
export function natsServerBinary(): string {
  const script = fileURLToPath(new URL('./install-nats.sh', import.meta.url))
  return execFileSync('bash', [script], { encoding: 'utf8' }).trim()
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo
      s.close(() => resolve(port))
    })
  })
}

/**
 * Until JetStream on this connection can place a stream with `replicas` copies (the cluster elected
 * its meta leader and knows that many peers): a probe stream is made and removed, for at most 60 s.
 */
export async function untilJetStreamReady(nc: NatsConnection, replicas: number): Promise<void> {
  const deadline = Date.now() + 60_000
  const probe = `PROBE_${process.pid}_${Date.now()}`
  for (;;) {
    try {
      const jsm = await jetstreamManager(nc)
      await jsm.streams.add({ name: probe, subjects: [`probe.${probe}`], num_replicas: replicas })
      await jsm.streams.delete(probe)
      return
    } catch (e) {
      if (Date.now() > deadline) throw e
      await new Promise((r) => setTimeout(r, 200))
    }
  }
}

export class NatsCluster {
  readonly nodes: NatsNode[] = []
  private readonly dir: string
  /** clusters started side by side (test files run in parallel) must never route to each other */
  private readonly clusterName = `hyperhub-${process.pid}-${Math.random().toString(36).slice(2, 10)}`

  private constructor(private readonly binary: string) {
    this.dir = mkdtempSync(join(tmpdir(), 'hyperhub-nats-'))
  }

  static async start(count = 3): Promise<NatsCluster> {
    const c = new NatsCluster(natsServerBinary())
    for (let i = 0; i < count; i++) {
      c.nodes.push({ name: `n${i + 1}`, clientPort: await freePort(), routePort: await freePort(), storeDir: join(c.dir, `n${i + 1}`), process: undefined, output: '' })
    }
    for (let i = 0; i < count; i++) c.run(i)
    await Promise.all(c.nodes.map((n) => c.untilListening(n)))
    return c
  }

  /** Client URLs of every node, for a client to fail over between them. */
  get servers(): string[] {
    return this.nodes.map((n) => `nats://127.0.0.1:${n.clientPort}`)
  }

  /** Starts node i (again, after a kill: same ports, same store). */
  run(i: number): void {
    const n = this.nodes[i]!
    const routes = this.nodes.filter((o) => o !== n).map((o) => `nats://127.0.0.1:${o.routePort}`).join(',')
    n.output = ''
    // one node is a plain JetStream server: JetStream clustering wants routes
    const clustering = this.nodes.length > 1 ? ['--cluster_name', this.clusterName, '--cluster', `nats://127.0.0.1:${n.routePort}`, '--routes', routes] : []
    const p = spawn(this.binary, ['-a', '127.0.0.1', '-p', String(n.clientPort), '-n', n.name, ...clustering, '-js', '-sd', n.storeDir], { stdio: ['ignore', 'pipe', 'pipe'] })
    const keep = (d: Buffer) => { n.output = (n.output + d.toString()).slice(-20_000) }
    p.stdout!.on('data', keep)
    p.stderr!.on('data', keep)
    n.process = p
  }

  /** SIGKILL: the node dies mid-write, as a machine losing power would. */
  async kill(i: number): Promise<void> {
    const p = this.nodes[i]!.process
    if (!p || p.exitCode !== null) return
    const exited = new Promise((r) => p.once('exit', r))
    p.kill('SIGKILL')
    await exited
    this.nodes[i]!.process = undefined
  }

  async restart(i: number): Promise<void> {
    this.run(i)
    await this.untilListening(this.nodes[i]!)
  }

  async stop(): Promise<void> {
    for (let i = 0; i < this.nodes.length; i++) await this.kill(i)
    rmSync(this.dir, { recursive: true, force: true })
  }

  /** Until the node's client port accepts connections (at most 15 s). */
  private async untilListening(n: NatsNode): Promise<void> {
    const deadline = Date.now() + 15_000
    for (;;) {
      const ok = await new Promise<boolean>((resolve) => {
        const s = net.connect(n.clientPort, '127.0.0.1')
        s.once('connect', () => { s.destroy(); resolve(true) })
        s.once('error', () => resolve(false))
      })
      if (ok) return
      // a port another process took between choosing and binding it: said at once
      if (n.process?.exitCode !== null && n.process?.exitCode !== undefined) throw new Error(`nats node ${n.name} exited: ${n.output.slice(-2000)}`)
      if (Date.now() > deadline) throw new Error(`nats node ${n.name} did not listen: ${n.output.slice(-2000)}`)
      await new Promise((r) => setTimeout(r, 100))
    }
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const count = Number(process.argv[process.argv.indexOf('--nodes') + 1] || 3) || 3
  const cluster = await NatsCluster.start(count)
  console.log(cluster.servers.join(','))
  const stop = () => { void cluster.stop().then(() => process.exit(0)) }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
}
