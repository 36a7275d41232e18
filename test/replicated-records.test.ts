// Issue 21, records shared by hub nodes (registry, twins) in a JetStream key-value bucket, on a real
// 3-node nats-server cluster on loopback: one node's write shows on another, the revision is a
// cross-node etag (a stale one is refused with RecordConflict), removals, ids KV keys could not
// hold, and writes going on while a node is killed with SIGKILL.
import { connect, type NatsConnection } from '@nats-io/transport-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { NatsCluster, untilJetStreamReady } from '../bench/cluster/nats-cluster.js'
import { RecordConflict, ReplicatedRecords } from '../src/storage/replicated-records.js'
import { until } from './helpers/device-mqtt.js'

interface Device { deviceId: string; status: string }
let cluster: NatsCluster
let onA: NatsConnection
let onB: NatsConnection


beforeAll(async () => {
  cluster = await NatsCluster.start(3)
  // two hub nodes, each on its own nats-server
  onA = await connect({ servers: [cluster.servers[0]!], maxReconnectAttempts: -1, reconnectTimeWait: 100 })
  onB = await connect({ servers: [cluster.servers[1]!], maxReconnectAttempts: -1, reconnectTimeWait: 100 })
  await untilJetStreamReady(onA, 3)
  await untilJetStreamReady(onB, 3)
}, 90_000)
afterAll(async () => {
  await onA?.close()
  await onB?.close()
  await cluster?.stop()
})

describe('ReplicatedRecords on a 3-node cluster', () => {
  it('a write on one node shows on the other; a stale revision is refused on either', async () => {
    const a = await ReplicatedRecords.open<Device>(onA, 'rr-devices', { replicas: 3 })
    const b = await ReplicatedRecords.open<Device>(onB, 'rr-devices', { replicas: 3 })
    // an id with characters KV keys do not take
    const id = 'dev:1+2@site'
    const r1 = await a.create(id, { deviceId: id, status: 'enabled' })
    expect(a.get(id)).toEqual({ value: { deviceId: id, status: 'enabled' }, revision: r1 })
    expect(await until(() => b.get(id), (v) => v !== undefined)).toEqual({ value: { deviceId: id, status: 'enabled' }, revision: r1 })
    await expect(b.create(id, { deviceId: id, status: 'disabled' })).rejects.toEqual(new RecordConflict(id, 'exists'))
    const r2 = await b.update(id, { deviceId: id, status: 'disabled' }, r1)
    // node A still read r1: its write is refused, nothing is lost
    await expect(a.update(id, { deviceId: id, status: 'enabled' }, r1)).rejects.toEqual(new RecordConflict(id, 'changed'))
    expect(await until(() => a.get(id)?.revision, (v) => v === r2)).toBe(r2)
    expect(a.get(id)!.value.status).toBe('disabled')
    await expect(a.remove(id, r1)).rejects.toEqual(new RecordConflict(id, 'changed'))
    await a.remove(id, r2)
    expect(a.get(id)).toBeUndefined()
    expect(await until(() => b.get(id), (v) => v === undefined)).toBeUndefined()
    a.close()
    b.close()
  })

  it('opens a purged bucket, and skips (and says) a value that is not a record', async () => {
    const a = await ReplicatedRecords.open<Device>(onA, 'rr-odd', { replicas: 3 })
    await a.create('x', { deviceId: 'x', status: 'enabled' })
    a.close()
    const { Kvm } = await import('@nats-io/kv')
    const { jetstreamManager } = await import('@nats-io/jetstream')
    const kv = await new Kvm(onA).open('rr-odd')
    await (await jetstreamManager(onA)).streams.purge('KV_rr-odd')
    // nothing left, the stream's last sequence pointing at nothing: the open does not wait for it
    const afterPurge = await ReplicatedRecords.open<Device>(onA, 'rr-odd', { replicas: 3, loadTimeoutMs: 5000 })
    expect(afterPurge.size).toBe(0)
    afterPurge.close()
    // written by something else than a hub node
    await kv.put(Buffer.from('junk').toString('base64url'), new TextEncoder().encode('not msgpack of a record'))
    await kv.put(Buffer.from('ok').toString('base64url'), (await import('msgpackr')).pack(['another-node', { deviceId: 'ok', status: 'enabled' }]))
    const b = await ReplicatedRecords.open<Device>(onB, 'rr-odd', { replicas: 3, loadTimeoutMs: 5000 })
    expect(b.get('ok')?.value).toEqual({ deviceId: 'ok', status: 'enabled' })
    expect(b.get('junk')).toBeUndefined()
    b.close()
  })

  it('loads what the bucket holds on open, and keeps taking writes while a node is killed', async () => {
    const a = await ReplicatedRecords.open<Device>(onA, 'rr-fleet', { replicas: 3 })
    for (let i = 0; i < 50; i++) await a.create(`d${i}`, { deviceId: `d${i}`, status: 'enabled' })
    await cluster.kill(2)
    // the majority (2 of 3) keeps the bucket writable; a write may wait for a new leader, bounded
    const written: string[] = []
    const deadline = Date.now() + 30_000
    for (let i = 50; i < 100 && Date.now() < deadline;) {
      try {
        await a.create(`d${i}`, { deviceId: `d${i}`, status: 'enabled' })
      } catch (e) {
        // a create whose answer was lost to the failover is there already: done; otherwise try again
        if (!(e instanceof RecordConflict)) { await new Promise((r) => setTimeout(r, 200)); continue }
      }
      written.push(`d${i++}`)
    }
    expect(written).toHaveLength(50)
    await cluster.restart(2)
    const later = await ReplicatedRecords.open<Device>(onB, 'rr-fleet', { replicas: 3 })
    expect(later.size).toBe(100)
    expect([...later.values()].map(([id]) => id).sort()).toEqual(Array.from({ length: 100 }, (_, i) => `d${i}`).sort())
    a.close()
    later.close()
  }, 90_000)
})
