// Issue 14 item 4: /metrics in Prometheus' text format agrees with what happened (telemetry per
// transport, the ack latency histogram, throttle counts and the metering endpoint's figures);
// /health answers; /ready says ready once listening and not while stopping.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MqttTestClient } from './helpers/mqtt-test-client.js'
import { startTestHub, type TestHub } from './helpers/test-hub.js'

let t: TestHub
beforeAll(async () => { t = await startTestHub() })
afterAll(() => t.stop())

/** `name{labels} value` lines of a Prometheus text exposition, as a map. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue
    const at = line.lastIndexOf(' ')
    out.set(line.slice(0, at), Number(line.slice(at + 1)))
  }
  return out
}

describe('/metrics', () => {
  it('needs ServiceConnect and counts telemetry, acks, throttles and metering as the metering endpoint does', async () => {
    expect((await t.rest('GET', '/metrics', { token: null })).status).toBe(401)
    const { primaryKey } = await t.createDevice('metrics-dev')
    const { client } = await MqttTestClient.connect({ port: t.hub.ports.mqttTcp!, clientId: 'metrics-dev', password: t.deviceToken('metrics-dev', primaryKey) })
    for (let i = 0; i < 130; i++) await client.publish(`devices/metrics-dev/messages/events/%24.mid=m${i}`, 'x'.repeat(5000), 1)
    // I/O threads report their counts to the main thread a moment later: scrape until the 130 are in (5 s at most)
    let r = await t.rest('GET', '/metrics')
    for (const deadline = Date.now() + 5000; !r.text.includes('hyperhub_metered_messages_total{operation="d2c"} 260') && Date.now() < deadline;) {
      await new Promise((res) => setTimeout(res, 50))
      r = await t.rest('GET', '/metrics')
    }
    expect(r.status).toBe(200)
    expect(r.headers['content-type']).toMatch(/^text\/plain/)
    const m = samples(r.text)
    expect(m.get('hyperhub_telemetry_received_total{transport="tcp"}')).toBe(130)
    expect(m.get('hyperhub_connections{transport="tcp",state="connected"}')).toBe(1)
    // one message in 64 is timed from arrival to its PUBACK
    expect(m.get('hyperhub_telemetry_ack_latency_seconds_count')).toBe(2)
    const metering = (await t.rest('GET', '/hyperhub/metering')).body
    // 5,000-byte bodies (plus the message id) are 2 chunks of 4 KB each
    expect(metering.quota.operations.d2c).toEqual({ messages: 260, operations: 130, refused: 0 })
    expect(m.get('hyperhub_metered_messages_total{operation="d2c"}')).toBe(260)
    expect(m.get('hyperhub_quota_messages_used')).toBe(metering.quota.used)
    expect(m.get('hyperhub_throttle_operations_total{throttle="d2c",outcome="admitted"}')).toBe(0) // unlimited: no throttle ran
    expect(m.has('hyperhub_process_resident_memory_bytes')).toBe(true)
    expect([...m.keys()].filter((k) => k.startsWith('hyperhub_partition_events')).reduce((s, k) => s + m.get(k)!, 0)).toBe(130)
    await client.disconnect()
  })
})

describe('probes', () => {
  it('/health and /ready answer without a credential', async () => {
    expect(await t.rest('GET', '/health', { token: null }).then((r) => [r.status, r.body])).toEqual([200, { status: 'ok' }])
    expect(await t.rest('GET', '/ready', { token: null }).then((r) => [r.status, r.body])).toEqual([200, { status: 'ready' }])
  })
})
