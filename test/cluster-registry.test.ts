// Issue 21, the identity registry of two hub nodes over one replicated bucket, on a real 3-node
// nats-server cluster: a device created on node A is known on node B (and its listeners hear of
// it), an update on B with the etag it read shows on A, and a write from a node that has not yet
// seen another's change is refused with Azure's errors (412 for a stale update, 409 for a create).
import { connect, type NatsConnection } from '@nats-io/transport-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { NatsCluster, untilJetStreamReady } from '../bench/cluster/nats-cluster.js'
import { DeviceRegistry, type DeviceRecord, type RegistryEvent } from '../src/registry/device-registry.js'
import { replicatedRecords } from '../src/registry/records-store.js'
import { ReplicatedRecords } from '../src/storage/replicated-records.js'
import { HubError } from '../src/rest/hub-error.js'
import { until } from './helpers/device-mqtt.js'

const presence = {
  connectionState: () => ({ connected: false, since: '0001-01-01T00:00:00Z' }),
  lastActivityTime: () => '0001-01-01T00:00:00Z',
  cloudToDeviceMessageCount: () => 0,
}
let cluster: NatsCluster
const connections: NatsConnection[] = []

async function node(server: number, bucket: string): Promise<{ registry: DeviceRegistry; records: ReplicatedRecords<DeviceRecord>; events: RegistryEvent[] }> {
  const nc = connections[server]!
  const records = await ReplicatedRecords.open<DeviceRecord>(nc, bucket, { replicas: 3 })
  const registry = new DeviceRegistry(replicatedRecords(records, 'device'), presence as never)
  const events: RegistryEvent[] = []
  registry.onChange((e) => events.push(e))
  return { registry, records, events }
}

beforeAll(async () => {
  cluster = await NatsCluster.start(3)
  // a hub node on each of two nats-servers, once the cluster can place 3 replicas
  for (const server of [0, 1]) {
    const nc = await connect({ servers: [cluster.servers[server]!], maxReconnectAttempts: -1, reconnectTimeWait: 100 })
    connections.push(nc)
    await untilJetStreamReady(nc, 3)
  }
}, 90_000)
afterAll(async () => {
  for (const c of connections) await c.close()
  await cluster?.stop()
})

describe('the registry on two hub nodes', () => {
  it('a device created on one node is known on the other; an update there shows back', async () => {
    const a = await node(0, 'reg-1')
    const b = await node(1, 'reg-1')
    const created = await a.registry.put('thermostat-1', {}, undefined)
    const seen = await until(() => b.registry.get('thermostat-1'), (d) => d !== undefined)
    expect(seen).toEqual(created)
    expect(b.events).toEqual([{ kind: 'updated', device: created }])
    const updated = await b.registry.put('thermostat-1', { status: 'disabled' }, `"${created.etag}"`)
    expect(await until(() => a.registry.get('thermostat-1')?.etag, (e) => e === updated.etag)).toBe(updated.etag)
    expect(a.registry.get('thermostat-1')!.status).toBe('disabled')
    await a.registry.delete('thermostat-1', `"${updated.etag}"`)
    expect(await until(() => b.registry.get('thermostat-1'), (d) => d === undefined)).toBeUndefined()
    // A's create, B's own update, A's delete: each once
    expect(b.events.map((e) => [e.kind, e.device.etag])).toEqual([['updated', created.etag], ['updated', updated.etag], ['deleted', updated.etag]])
    expect(a.events.map((e) => [e.kind, e.device.etag])).toEqual([['updated', created.etag], ['updated', updated.etag], ['deleted', updated.etag]])
    a.records.close()
    b.records.close()
  })

  it('a node that has not seen another\'s change yet is refused: 412 for the update, 409 for the create', async () => {
    const a = await node(0, 'reg-2')
    const b = await node(1, 'reg-2')
    const created = await a.registry.put('meter-1', {}, undefined)
    await until(() => b.registry.get('meter-1'), (d) => d !== undefined)
    // A stops hearing B (its watch ends): its copy stays as it was
    a.records.close()
    await b.registry.put('meter-1', { status: 'disabled' }, `"${created.etag}"`)
    const stale = await a.registry.put('meter-1', { status: 'enabled' }, `"${created.etag}"`).catch((e: unknown) => e)
    expect(stale).toEqual(new HubError(412001, 'Precondition failed: the device meter-1 changed on another node since this one read it'))
    await b.registry.put('meter-2', {}, undefined)
    const twice = await a.registry.put('meter-2', {}, undefined).catch((e: unknown) => e)
    expect(twice).toEqual(new HubError(409001, "A device with ID 'meter-2' is already registered."))
    // nothing B wrote was overwritten
    expect(b.registry.get('meter-1')!.status).toBe('disabled')
    b.records.close()
  })
})
