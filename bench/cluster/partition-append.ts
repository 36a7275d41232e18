// The built-in endpoint's partition log, appended as a shard appends it, on three stores side by side:
// LMDB in this process (one node today), JetStream on a 1-node nats-server (replicas 1), JetStream
// on a 3-node cluster (replicas 3), all on loopback. Four partitions are written at once, each with
// batches of 100 events of 200 bytes, each batch awaited (as a shard awaits its commit before the
// PUBACKs). Reports events/s, this process's CPU and the nats-servers' CPU per event; stores
// interleave over the runs.
// Usage: npx tsx bench/cluster/partition-append.ts [--seconds 5 --runs 3]
// Loopback only; every loop is bounded in count and time.
import { readFileSync, rmSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { connect, type NatsConnection } from '@nats-io/transport-node'
import { NatsCluster, untilJetStreamReady } from './nats-cluster.js'
import { PartitionLog } from '../../shards/partition-log.js'
import { JetStreamPartitionLog } from '../../src/storage/jetstream-partition-log.js'
import type { PartitionAppender } from '../../src/storage/partition-appender.js'
import type { RawEvent } from '../../src/events/segment-codec.js'
import { openHubStore } from '../../src/store/hub-store.js'
import { tempDir } from '../../test/helpers/test-hub.js'

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '5' }, runs: { type: 'string', default: '3' } } })
const SECONDS = Number(values.seconds)
const RUNS = Number(values.runs)
const PARTITIONS = 4
const BATCH = 100
const sender = { deviceId: 'bench-dev', generationId: 'g', authMethod: 'sas' }
const body = Buffer.alloc(200, 0x61)
const batch = (): RawEvent[] => Array.from({ length: BATCH }, () => ({ t: Date.now(), sender, bag: '', extra: null, body }))

/** CPU seconds (user + system) of a process, from /proc (clock ticks of 10 ms). */
function cpuOf(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}


interface Store { name: string; logs(run: number): Promise<PartitionAppender[]>; serverPids(): number[] }

async function measure(store: Store, run: number): Promise<{ rate: number; clientUs: number; serverUs: number }> {
  const logs = await store.logs(run)
  const pids = store.serverPids()
  const server0 = pids.reduce((n, p) => n + cpuOf(p), 0)
  const client0 = process.cpuUsage()
  const start = performance.now()
  const end = start + SECONDS * 1000
  let events = 0
  await Promise.all(logs.map(async (log) => {
    for (let i = 0; i < 1_000_000 && performance.now() < end; i++) {
      await log.append(batch())
      events += BATCH
    }
  }))
  const seconds = (performance.now() - start) / 1000
  const client = process.cpuUsage(client0)
  const server = pids.reduce((n, p) => n + cpuOf(p), 0) - server0
  return { rate: events / seconds, clientUs: ((client.user + client.system) / events), serverUs: (server * 1e6) / events }
}

const dir = tempDir('partition-append-')
const hubStore = openHubStore(dir)
const single = await NatsCluster.start(1)
const triple = await NatsCluster.start(3)
const ncSingle = await connect({ servers: single.servers })
const ncTriple = await connect({ servers: triple.servers, maxReconnectAttempts: -1 })
await untilJetStreamReady(ncSingle, 1)
await untilJetStreamReady(ncTriple, 3)
const stores: Store[] = [
  { name: 'LMDB, this process', logs: async () => Array.from({ length: PARTITIONS }, (_, p) => new PartitionLog(p, hubStore.partition(p), hubStore.partitionIndex(p))), serverPids: () => [] },
  { name: 'JetStream, 1 node, replicas 1', logs: (run) => Promise.all(Array.from({ length: PARTITIONS }, (_, p) => JetStreamPartitionLog.open(ncSingle, p, { replicas: 1, retentionMs: 3_600_000, prefix: `B1R${run}` }))), serverPids: () => single.nodes.map((n) => n.process!.pid!) },
  { name: 'JetStream, 3 nodes, replicas 3', logs: (run) => Promise.all(Array.from({ length: PARTITIONS }, (_, p) => JetStreamPartitionLog.open(ncTriple, p, { replicas: 3, retentionMs: 3_600_000, prefix: `B3R${run}` }))), serverPids: () => triple.nodes.map((n) => n.process!.pid!) },
]
const results = new Map<string, { rate: number; clientUs: number; serverUs: number }[]>()
console.log(`partition appends: ${PARTITIONS} partitions at once, batches of ${BATCH} x ${body.length} B, ${SECONDS} s per run, ${RUNS} runs; node ${process.version}`)
for (let run = 1; run <= RUNS; run++) {
  // a different order each run: no store always goes first
  const order = run % 2 === 1 ? stores : [...stores].reverse()
  for (const s of order) {
    const r = await measure(s, run)
    results.set(s.name, [...(results.get(s.name) ?? []), r])
    console.log(`run ${run} ${s.name}: ${Math.round(r.rate)} events/s, this process ${r.clientUs.toFixed(2)} µs CPU/event, nats-servers ${r.serverUs.toFixed(2)} µs CPU/event`)
  }
}
const range = (xs: number[], digits = 0) => `${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}`
console.log('\n| store | events/s | this process µs CPU/event | nats-servers µs CPU/event |\n|---|---|---|---|')
for (const [name, rs] of results) console.log(`| ${name} | ${range(rs.map((r) => r.rate))} | ${range(rs.map((r) => r.clientUs), 2)} | ${range(rs.map((r) => r.serverUs), 2)} |`)
await ncSingle.close()
await ncTriple.close()
await single.stop()
await triple.stop()
await hubStore.close()
rmSync(dir, { recursive: true, force: true })
