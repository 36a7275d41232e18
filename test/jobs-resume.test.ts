// Issue 18: a scheduled job survives the hub dying. A hub killed with SIGKILL in the middle of a
// twin-update job resumes it after restart: every targeted device is patched exactly once (its
// desired $version went up by one), none is skipped, and the job's counts match its records. A twin
// takes a job's patch once, so a device whose update was in flight at the kill is not patched twice.
import { rmSync } from 'node:fs'
import { afterAll, describe, expect, it } from 'vitest'
import { spawnHub, type HubProcess } from './helpers/hub-process.js'
import { seedPki, tempDir } from './helpers/test-hub.js'
import { until } from './helpers/device-mqtt.js'
import { TwinStore } from '../shards/twin-store.js'
import { tempStore } from './helpers/temp-store.js'
import type mqttPacket from 'mqtt-packet'
import { MqttTestClient } from './helpers/mqtt-test-client.js'
import { createSasToken } from '../src/auth/sas-token.js'

const V = 'api-version=2021-04-12'
const dirs: string[] = []
const hubs: HubProcess[] = []
afterAll(() => {
  for (const h of hubs) if (h.child.exitCode === null) h.child.kill('SIGKILL')
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

async function allPages(hub: HubProcess, query: string): Promise<any[]> {
  // the child's REST helper sends no paging headers: 100 per page is enough for 60 records
  const r = await hub.rest('POST', `/devices/query?${V}`, { query })
  expect(r.status).toBe(200)
  return r.body as any[]
}

/** A data directory of its own and a hub on it (killed and removed after the tests). */
async function firstHub(prefix: string): Promise<{ dir: string; hub: HubProcess }> {
  const dir = tempDir(prefix)
  dirs.push(dir)
  seedPki(dir)
  const hub = await spawnHub(dir)
  hubs.push(hub)
  return { dir, hub }
}

describe('a job across a SIGKILL', () => {
  it('resumes where it stopped: every device patched once, none skipped', async () => {
    const { dir, hub: first } = await firstHub('hyperhub-job-kill-')
    const ids = Array.from({ length: 60 }, (_, i) => `kill-${String(i).padStart(2, '0')}`)
    const bulk = await first.rest('POST', `/devices?${V}`, ids.map((id) => ({ id, importMode: 'create', status: 'enabled', tags: { fleet: 'k' } })))
    expect(bulk.body).toMatchObject({ isSuccessful: true })
    // a burst of 6 device operations, then one per 10 s: the kill lands mid-job
    expect((await first.rest('PUT', '/hyperhub/tier', { tier: 'unlimited', overrides: { jobDeviceOps: 0.1 } })).status).toBe(200)
    const created = await first.rest('PUT', `/jobs/v2/kill-job?${V}`, { type: 'scheduleUpdateTwin', queryCondition: "tags.fleet = 'k'", updateTwin: { etag: '*', properties: { desired: { firmware: '2.0' } } } })
    expect(created.status).toBe(200)
    const mid = await until(() => first.rest('GET', `/jobs/v2/kill-job?${V}`), (r) => r.body.deviceJobStatistics.succeededCount >= 6, 15_000)
    expect(mid.body.status).toBe('running')
    first.child.kill('SIGKILL')
    await first.exited

    const second = await spawnHub(dir)
    hubs.push(second)
    const done = await until(() => second.rest('GET', `/jobs/v2/kill-job?${V}`), (r) => r.body.status !== 'running', 20_000)
    expect(done.body).toMatchObject({ status: 'completed', deviceJobStatistics: { deviceCount: 60, succeededCount: 60, failedCount: 0, pendingCount: 0, runningCount: 0 } })
    const twins = await allPages(second, "SELECT deviceId, properties.desired.firmware, properties.desired.$version FROM devices WHERE tags.fleet = 'k'")
    expect(twins.map((t) => [t.deviceId, t.firmware, t.$version]).sort()).toEqual(ids.map((id) => [id, '2.0', 2]))
    const records = await allPages(second, "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'kill-job'")
    expect(records.map((r) => [r.deviceId, r.status]).sort()).toEqual(ids.map((id) => [id, 'completed']))
    second.child.kill('SIGTERM')
    await second.exited
  }, 60_000)
})

/** A raw MQTT device on a child hub that counts the method calls it gets, and answers them or not. */
async function methodDevice(hub: HubProcess, id: string, key: string, calls: Map<string, number>, answer: boolean): Promise<MqttTestClient> {
  const { client, connack } = await MqttTestClient.connect({ port: hub.ports.mqttTcp, clientId: id, password: createSasToken(encodeURIComponent(`localhost/devices/${id}`), key, undefined, 3600), clean: true })
  expect(connack.returnCode).toBe(0)
  await client.subscribe('$iothub/methods/POST/#', 0)
  client.socket.on('data', () => {
    for (const p of client.packets.splice(0)) {
      const m = p.cmd === 'publish' ? /^\$iothub\/methods\/POST\/([^/]+)\/\?\$rid=(.+)$/.exec((p as mqttPacket.IPublishPacket).topic) : null
      if (!m) continue
      calls.set(id, (calls.get(id) ?? 0) + 1)
      if (answer) client.send({ cmd: 'publish', topic: `$iothub/methods/res/200/?$rid=${m[2]}`, payload: Buffer.from('{}'), qos: 0, retain: false, dup: false } as mqttPacket.IPublishPacket)
    }
  })
  return client
}

describe('a method job across a SIGKILL', () => {
  it('does not send a call that was in flight again, and waits for the others to reconnect', async () => {
    const { dir, hub: first } = await firstHub('hyperhub-job-kill-m-')
    const key = Buffer.from('job-resume-test-device-key-0001').toString('base64')
    const ids = Array.from({ length: 10 }, (_, i) => `mk-${i}`)
    const bulk = await first.rest('POST', `/devices?${V}`, ids.map((id) => ({ id, importMode: 'create', status: 'enabled', authentication: { type: 'sas', symmetricKey: { primaryKey: key, secondaryKey: key } } })))
    expect(bulk.body).toMatchObject({ isSuccessful: true })
    const calls = new Map<string, number>()
    // before the kill the devices hold every call: those in flight when it lands were sent once
    const before = await Promise.all(ids.map((id) => methodDevice(first, id, key, calls, false)))
    expect((await first.rest('PUT', '/hyperhub/tier', { tier: 'unlimited', overrides: { jobDeviceOps: 0.1 } })).status).toBe(200)
    expect((await first.rest('PUT', `/jobs/v2/kill-m?${V}`, { type: 'scheduleDeviceMethod', queryCondition: "STARTSWITH(deviceId, 'mk-')", cloudToDeviceMethod: { methodName: 'flash', responseTimeoutInSeconds: 120 } })).status).toBe(200)
    await until(() => [...calls.values()].reduce((a, b) => a + b, 0), (n) => n === 6, 15_000)
    first.child.kill('SIGKILL')
    await first.exited
    for (const c of before) c.socket.destroy()

    const second = await spawnHub(dir)
    hubs.push(second)
    // the devices come back once the restarted hub is running the job (it has settled the six
    // interrupted calls), and answer now: the four left are called only if the job waited for them
    await until(() => second.rest('GET', `/jobs/v2/kill-m?${V}`), (r) => r.body.deviceJobStatistics.failedCount >= 6, 15_000)
    const after = await Promise.all(ids.map((id) => methodDevice(second, id, key, calls, true)))
    const done = await until(() => second.rest('GET', `/jobs/v2/kill-m?${V}`), (r) => r.body.status !== 'running', 30_000)
    expect(done.body).toMatchObject({ status: 'completed', deviceJobStatistics: { deviceCount: 10, succeededCount: 4, failedCount: 6, pendingCount: 0, runningCount: 0 } })
    // every device got exactly one call: six before the kill, four after
    expect(ids.map((id) => calls.get(id))).toEqual(ids.map(() => 1))
    const records = await allPages(second, "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'kill-m'")
    expect(records.filter((r) => r.status === 'failed').map((r) => r.error.code)).toEqual(Array(6).fill('JobRunInterrupted'))
    for (const c of after) c.socket.destroy()
    second.child.kill('SIGTERM')
    await second.exited
  }, 90_000)
})

describe('a twin and a job', () => {
  const temp = tempStore()
  afterAll(() => temp.close())
  it('takes a job\'s patch once: the same job again changes nothing, another job does', async () => {
    const twins = new TwinStore(temp.store.twins)
    await twins.ensure('job-twin', 'gen')
    const patch = { properties: { desired: { a: 1 } } }
    const once = twins.updateFromService('job-twin', 'patch', patch, undefined, 'job-a')
    await once.written
    const again = twins.updateFromService('job-twin', 'patch', { properties: { desired: { a: 2 } } }, undefined, 'job-a')
    await again.written
    expect([again.doc.version, again.doc.desired.a]).toEqual([once.doc.version, 1])
    const other = twins.updateFromService('job-twin', 'patch', { properties: { desired: { a: 3 } } }, undefined, 'job-b')
    await other.written
    expect([other.doc.version, other.doc.desired.a]).toEqual([once.doc.version + 1, 3])
  })
})
