// Issue 18: azure-iothub's JobClient, unchanged, on the standard ports: scheduleDeviceMethod and
// scheduleTwinUpdate over a query on 1,000 devices complete with a result per device (read back with
// Registry.createQuery over devices.jobs); a job scheduled for later starts then; cancelJob stops a
// running one; createQuery lists jobs; a condition that does not parse is refused. Two of the devices
// are azure-iot-device clients answering with onDeviceMethod; the rest are raw MQTT clients.
import type mqttPacket from 'mqtt-packet'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Client as DeviceClient } from 'azure-iot-device'
import { Mqtt } from 'azure-iot-device-mqtt'
import { JobClient, Registry } from 'azure-iothub'
import { serviceConnectionString } from '../src/auth/policies.js'
import { startTestHub, type TestHub } from './helpers/test-hub.js'
import { until } from './helpers/device-mqtt.js'
import { MqttTestClient } from './helpers/mqtt-test-client.js'

const DEVICES = 1000
let t: TestHub
let registry: Registry
let jobs: JobClient
const raw: MqttTestClient[] = []
const sdkDevices: DeviceClient[] = []
const ids = Array.from({ length: DEVICES }, (_, i) => `fleet-${String(i).padStart(4, '0')}`)

/** A raw MQTT device that answers every method call with 200 and the method's name. */
async function rawDevice(deviceId: string, key: string): Promise<MqttTestClient> {
  const { client } = await MqttTestClient.connect({ port: t.hub.ports.mqttTcp!, clientId: deviceId, password: t.deviceToken(deviceId, key), clean: true })
  await client.subscribe('$iothub/methods/POST/#', 0)
  client.socket.on('data', () => {
    for (const p of client.packets.splice(0)) {
      const m = p.cmd === 'publish' ? /^\$iothub\/methods\/POST\/([^/]+)\/\?\$rid=(.+)$/.exec((p as mqttPacket.IPublishPacket).topic) : null
      if (m) client.send({ cmd: 'publish', topic: `$iothub/methods/res/200/?$rid=${m[2]}`, payload: Buffer.from(JSON.stringify({ by: deviceId, method: m[1] })), qos: 0, retain: false, dup: false } as mqttPacket.IPublishPacket)
    }
  })
  return client
}

beforeAll(async () => {
  if (!process.env.NODE_EXTRA_CA_CERTS) throw new Error('run through `npm test`: the SDKs need NODE_EXTRA_CA_CERTS set at process start')
  t = await startTestHub({ mqttPort: 8883, httpsPort: 443, mqttTcpPort: 0, amqpPort: null, shards: 2 })
  const cs = serviceConnectionString('localhost', t.hub.policies.find((p) => p.keyName === 'iothubowner')!)
  registry = Registry.fromConnectionString(cs)
  jobs = JobClient.fromConnectionString(cs)
  for (let i = 0; i < DEVICES; i += 100) {
    const r = await t.rest('POST', '/devices?api-version=2021-04-12', { body: ids.slice(i, i + 100).map((id) => ({ id, importMode: 'create', status: 'enabled', tags: { fleet: 'big' } })) })
    if (!r.body?.isSuccessful) throw new Error(`bulk create: ${r.text}`)
  }
  for (const id of ids.slice(2)) raw.push(await rawDevice(id, t.hub.registry.get(id)!.authentication.symmetricKey.primaryKey!))
  for (const id of ids.slice(0, 2)) {
    const key = t.hub.registry.get(id)!.authentication.symmetricKey.primaryKey!
    const c = DeviceClient.fromConnectionString(`HostName=localhost;DeviceId=${id};SharedAccessKey=${key}`, Mqtt)
    await c.open()
    c.onDeviceMethod('ping', (req, res) => { void res.send(200, { by: id, method: req.methodName, sdk: true }) })
    sdkDevices.push(c)
  }
}, 180_000)
afterAll(async () => {
  for (const c of sdkDevices) await c.close()
  for (const c of raw) c.socket.destroy()
  await t?.stop()
})

async function finished(jobId: string, timeoutMs = 60_000): Promise<any> {
  const r = await until(async () => (await jobs.getJob(jobId)).jobStatus as any, (j) => ['completed', 'failed', 'cancelled'].includes(j.status), timeoutMs)
  return r
}

async function deviceRecords(jobId: string): Promise<any[]> {
  const query = registry.createQuery(`SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '${jobId}'`, 500)
  const out: any[] = []
  for (let pages = 0; query.hasMoreResults && pages < 10; pages++) out.push(...(await query.next(query.continuationToken)).result as any[])
  return out.sort((a, b) => a.deviceId.localeCompare(b.deviceId))
}

describe('JobClient on 1,000 devices', () => {
  it('scheduleDeviceMethod calls every selected device and records each answer', async () => {
    const created = (await jobs.scheduleDeviceMethod('sdk-method', "tags.fleet = 'big'", { methodName: 'ping', payload: { hello: 1 }, responseTimeoutInSeconds: 30 })).jobStatus as any
    expect(created).toMatchObject({ jobId: 'sdk-method', type: 'scheduleDeviceMethod', status: 'queued' })
    const job = await finished('sdk-method')
    expect(job).toMatchObject({ status: 'completed', deviceJobStatistics: { deviceCount: DEVICES, succeededCount: DEVICES, failedCount: 0, pendingCount: 0, runningCount: 0 } })
    const records = await deviceRecords('sdk-method')
    expect(records.map((r) => r.deviceId)).toEqual(ids)
    expect(records.every((r) => r.status === 'completed' && r.outcome.deviceMethodResponse.status === 200 && r.outcome.deviceMethodResponse.payload.by === r.deviceId)).toBe(true)
    expect(records[0].outcome.deviceMethodResponse.payload).toEqual({ by: ids[0], method: 'ping', sdk: true })
  }, 120_000)

  it('scheduleTwinUpdate patches every selected twin once', async () => {
    const created = (await jobs.scheduleTwinUpdate('sdk-twin', "tags.fleet = 'big'", { etag: '*', properties: { desired: { firmware: '3.1' } } })).jobStatus as any
    expect(created).toMatchObject({ jobId: 'sdk-twin', type: 'scheduleUpdateTwin' })
    const job = await finished('sdk-twin')
    expect(job.deviceJobStatistics).toMatchObject({ deviceCount: DEVICES, succeededCount: DEVICES })
    const count = (await registry.createQuery("SELECT COUNT() AS n FROM devices WHERE properties.desired.firmware = '3.1' AND properties.desired.$version = 2").next()).result as any[]
    expect(count).toEqual([{ n: DEVICES }])
    expect((await deviceRecords('sdk-twin')).filter((r) => r.status === 'completed')).toHaveLength(DEVICES)
  }, 120_000)

  it('a job scheduled for later starts then', async () => {
    const start = new Date(Date.now() + 2000)
    const created = (await jobs.scheduleTwinUpdate('sdk-later', "deviceId = 'fleet-0005'", { etag: '*', tags: { later: true } }, start, 600)).jobStatus as any
    expect(created).toMatchObject({ status: 'scheduled', startTime: start.toISOString(), maxExecutionTimeInSeconds: 600 })
    const job = await finished('sdk-later')
    expect(job.status).toBe('completed')
    const [record] = await deviceRecords('sdk-later')
    expect(Date.parse(record.startTimeUtc)).toBeGreaterThanOrEqual(start.getTime())
  })

  it('cancelJob stops a running job', async () => {
    // a burst of 6 device operations, then one per 10 s: the job runs long enough to be cancelled
    expect((await t.rest('PUT', '/hyperhub/tier', { body: { tier: 'unlimited', overrides: { jobDeviceOps: 0.1 } } })).status).toBe(200)
    try {
      await jobs.scheduleTwinUpdate('sdk-cancel', "tags.fleet = 'big'", { etag: '*', tags: { cancelled: 'maybe' } })
      await until(async () => (await jobs.getJob('sdk-cancel')).jobStatus as any, (j) => j.deviceJobStatistics.succeededCount >= 1)
      const cancelled = (await jobs.cancelJob('sdk-cancel')).jobStatus as any
      expect(cancelled.status).toBe('cancelled')
      const job = await finished('sdk-cancel')
      const records = await deviceRecords('sdk-cancel')
      expect(job.deviceJobStatistics.succeededCount).toBeLessThan(20)
      expect(records.filter((r) => r.status === 'canceled').length).toBe(records.length - job.deviceJobStatistics.succeededCount)
    } finally {
      await t.rest('PUT', '/hyperhub/tier', { body: { tier: 'unlimited' } })
    }
  })

  it('createQuery lists jobs by type and status', async () => {
    const query = jobs.createQuery('scheduleDeviceMethod', 'completed' as never, 10)
    const { result } = await query.next()
    expect((result as any[]).map((j) => j.jobId)).toEqual(['sdk-method'])
  })

  it('refuses a condition that does not parse, with Azure\'s error', async () => {
    const e = await jobs.scheduleTwinUpdate('sdk-bad', 'tags.fleet = = 1', { etag: '*', tags: { a: 1 } }).catch((x: Error) => x)
    expect(e).toBeInstanceOf(Error)
    expect((e as Error).constructor.name).toBe('ArgumentError')
    expect((e as Error).message).toContain('queryCondition does not parse')
  })
})
