// Issue 10 item 5: a full disk leaves the real hub process serving. Writes are refused with
// Azure's server-busy answers (MQTT: the message is not PUBACKed and the connection closes; REST:
// 503 ServerBusy), reads and connected devices go on, the failure is logged once per thread, and
// writes work again when space returns. Nothing acknowledged is lost and sequence numbers stay
// dense. The data directory sits on a small tmpfs mounted for the test (the suite runs as root,
// as it must to bind 443 and 8883).
import { execFileSync } from 'node:child_process'
import { mkdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { createSasToken } from '../src/auth/sas-token.js'
import { MqttTestClient } from './helpers/mqtt-test-client.js'
import { allEvents, spawnHub, type HubProcess } from './helpers/hub-process.js'
import { tempDir } from './helpers/test-hub.js'
import { partitionOf } from '../src/shard-protocol.js'

const mounts: string[] = []
afterAll(() => {
  for (const m of mounts) {
    try { execFileSync('umount', ['-l', m]) } catch { /* already gone */ }
    rmSync(m, { recursive: true, force: true })
  }
})

function smallDisk(mb: number): string {
  const dir = tempDir('hyperhub-disk-')
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${mb}m`, 'tmpfs', dir])
  mounts.push(dir)
  return dir
}

const freeBytes = (dir: string) => { const s = statfsSync(dir); return s.bavail * s.bsize }

/** Bounded polling for something the hub does on its own clock (its disk check runs once a second). */
async function eventually<T>(probe: () => Promise<T>, ok: (v: T) => boolean, what: string, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const v = await probe()
    if (ok(v)) return v
    if (Date.now() > deadline) throw new Error(`${what}: still ${JSON.stringify(v)}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

async function deviceClient(hub: HubProcess, id: string): Promise<MqttTestClient> {
  const d = await hub.rest('GET', `/devices/${id}`)
  const token = createSasToken(encodeURIComponent(`localhost/devices/${id}`), d.body.authentication.symmetricKey.primaryKey)
  return (await MqttTestClient.connect({ port: hub.ports.mqttTcp, clientId: id, password: token })).client
}

/** One QoS 1 message on a fresh connection: 'acked', or 'refused' when the hub closed it without a PUBACK. */
async function publishOnce(hub: HubProcess, id: string, mid: string, bytes = 100): Promise<'acked' | 'refused'> {
  const c = await deviceClient(hub, id)
  try {
    await c.publish(`devices/${id}/messages/events/%24.mid=${mid}`, Buffer.alloc(bytes, 1), 1)
    return 'acked'
  } catch (e) {
    expect((e as Error).message).toBe('connection closed while waiting for puback')
    return 'refused'
  } finally {
    c.destroy()
  }
}

function expectDense(events: { partitionId?: string; sequenceNumber?: number }[]): void {
  const byPartition = new Map<string, number[]>()
  for (const e of events) byPartition.set(e.partitionId!, [...(byPartition.get(e.partitionId!) ?? []), e.sequenceNumber!])
  for (const seqs of byPartition.values()) expect(seqs).toEqual(seqs.map((_, i) => seqs[0]! + i))
}

describe('a full disk', () => {
  it('below the free-space reserve: writes refused with server-busy answers, reads served, writes back once space returns', async () => {
    const disk = smallDisk(96)
    const dataDir = join(disk, 'data')
    mkdirSync(dataDir)
    const hub = await spawnHub(dataDir, ['--shards', '2', '--min-free-disk-mb', '32'])
    try {
      for (const id of ['df-idle', 'df-pub']) expect((await hub.rest('PUT', `/devices/${id}`, { deviceId: id })).status).toBe(200)
      const idle = await deviceClient(hub, 'df-idle')
      const acked: string[] = []
      for (let i = 0; i < 20; i++) {
        expect(await publishOnce(hub, 'df-pub', `before-${i}`)).toBe('acked')
        acked.push(`before-${i}`)
      }
      // fill the disk to 16 MB free, below the 32 MB reserve
      const filler = join(disk, 'filler')
      writeFileSync(filler, Buffer.alloc(freeBytes(disk) - 16 * 1048576))
      let created = 0
      const createOne = () => { const id = `df-new-${created++}`; return hub.rest('PUT', `/devices/${id}`, { deviceId: id }) }
      const refused = await eventually(createOne, (r) => r.status === 503, 'REST write while the disk is full')
      // the free space named is what the hub's once-a-second check saw: perhaps while the filler was still being written
      const named = /^ErrorCode:ServerBusy;the hub cannot store data right now \(the disk of the data directory has (\d+) MB free, below the 32 MB reserve\); retry later$/.exec(refused.body.Message)
      expect(refused.body.Message).toMatch(/^ErrorCode:ServerBusy;the hub cannot store data right now \(the disk of the data directory has \d+ MB free, below the 32 MB reserve\); retry later$/)
      expect(Number(named![1])).toBeGreaterThanOrEqual(15)
      expect(Number(named![1])).toBeLessThan(32)
      // every other write of the main thread is refused the same way
      for (const [method, path, body] of [
        ['PUT', `/messages/events/consumerGroups/$Default/partitions/${partitionOf('df-pub', 4)}/checkpoint`, { sequenceNumber: 0 }],
        ['PUT', '/messages/events/consumerGroups/while-full', undefined],
        ['PUT', '/routing/routes/while-full', { endpointNames: ['events'] }],
      ] as const) {
        const r = await hub.rest(method, path, body)
        expect({ path, status: r.status, code: r.body?.Message?.split(';')[0] }).toEqual({ path, status: 503, code: 'ErrorCode:ServerBusy' })
      }
      // MQTT: not acknowledged, the connection closed (each shard checks the disk on its own)
      let n = 0
      await eventually(async () => {
        const mid = `during-${n++}`
        const outcome = await publishOnce(hub, 'df-pub', mid)
        if (outcome === 'acked') acked.push(mid) // the shard had not seen the disk yet: this one is stored
        return outcome
      }, (o) => o === 'refused', 'MQTT publish while the disk is full')
      // reads and connected devices are served
      expect((await hub.rest('GET', '/devices/df-idle')).status).toBe(200)
      expect((await hub.rest('GET', '/messages/events/partitions')).status).toBe(200)
      const pong = idle.next('pingresp')
      idle.send({ cmd: 'pingreq' })
      await pong
      expect(hub.child.exitCode).toBeNull()

      rmSync(filler)
      await eventually(createOne, (r) => r.status === 200, 'REST write after space returned')
      await eventually(async () => {
        const mid = `after-${n++}`
        const outcome = await publishOnce(hub, 'df-pub', mid)
        if (outcome === 'acked') acked.push(mid)
        return outcome
      }, (o) => o === 'acked', 'MQTT publish after space returned')
      const events = await allEvents(hub)
      const stored = new Set(events.map((e) => e.systemProperties['message-id']))
      expect(acked.filter((m) => !stored.has(m))).toEqual([])
      expectDense(events as never)
      // logged once per thread that saw it (the main thread and two shards), not once per refused write
      const failures = hub.output().split('\n').filter((l) => l.includes('store writes failed'))
      expect(failures.length).toBeGreaterThan(0)
      expect(failures.length).toBeLessThanOrEqual(3)
      idle.destroy()
    } finally {
      hub.child.kill('SIGKILL')
      await hub.exited
    }
  }, 90_000)

  it('with no reserve, a commit that fails on the full disk does not stop the hub; writes resume when the disk grows', async () => {
    const disk = smallDisk(32)
    const dataDir = join(disk, 'data')
    mkdirSync(dataDir)
    const hub = await spawnHub(dataDir, ['--shards', '1', '--min-free-disk-mb', '0'])
    try {
      expect((await hub.rest('PUT', '/devices/enospc', { deviceId: 'enospc' })).status).toBe(200)
      const acked: string[] = []
      let n = 0
      // large messages until a commit fails for want of space: that message is refused, the hub lives
      await eventually(async () => {
        const mid = `fill-${n++}`
        const outcome = await publishOnce(hub, 'enospc', mid, 200_000)
        if (outcome === 'acked') acked.push(mid)
        return outcome
      }, (o) => o === 'refused', 'a publish on a full disk', 60_000)
      expect(hub.child.exitCode).toBeNull()
      expect((await hub.rest('GET', '/devices/enospc')).status).toBe(200)
      execFileSync('mount', ['-o', 'remount,size=96m', disk])
      await eventually(async () => {
        const mid = `grown-${n++}`
        const outcome = await publishOnce(hub, 'enospc', mid)
        if (outcome === 'acked') acked.push(mid)
        return outcome
      }, (o) => o === 'acked', 'a publish after the disk grew')
      const events = await allEvents(hub)
      const stored = new Set(events.map((e) => e.systemProperties['message-id']))
      expect(acked.filter((m) => !stored.has(m))).toEqual([])
      expectDense(events as never)
      expect(hub.output()).not.toMatch(/unhandled|malloc/i)
    } finally {
      hub.child.kill('SIGKILL')
      await hub.exited
    }
  }, 120_000)
})
