// The load generator's own pieces: its hand-made packets must be what a real MQTT parser reads, and
// its latency figures must be right, or every benchmark figure is wrong.
import { describe, expect, it } from 'vitest'
import mqttPacket from 'mqtt-packet'
import { Histogram } from '../bench/load/histogram.js'
import { connectPacket, PacketReader, pubackPacket, PublishTemplate, subscribePacket, type Incoming } from '../bench/load/mqtt-wire.js'

function parseAll(bytes: Buffer): mqttPacket.Packet[] {
  const out: mqttPacket.Packet[] = []
  const parser = mqttPacket.parser({ protocolVersion: 4 })
  parser.on('packet', (p: mqttPacket.Packet) => out.push(p))
  parser.on('error', (e: Error) => { throw e })
  parser.parse(bytes)
  return out
}

describe('load generator packets', () => {
  it('CONNECT and SUBSCRIBE parse as sent', () => {
    const [connect] = parseAll(connectPacket({ clientId: 'dev-000001', username: 'localhost/dev-000001/?api-version=2021-04-12', password: 'SharedAccessSignature sr=x', keepalive: 300, clean: true }))
    expect(connect).toMatchObject({ cmd: 'connect', clientId: 'dev-000001', username: 'localhost/dev-000001/?api-version=2021-04-12', keepalive: 300, clean: true, protocolVersion: 4 })
    expect((connect as mqttPacket.IConnectPacket).password!.toString()).toBe('SharedAccessSignature sr=x')
    expect(parseAll(subscribePacket(7, 'devices/+/messages/events/#', 1))[0]).toMatchObject({ cmd: 'subscribe', messageId: 7, subscriptions: [{ topic: 'devices/+/messages/events/#', qos: 1 }] })
  })

  it.each([[0, 16], [1, 256], [1, 300 * 1024]] as const)('PUBLISH templates (QoS %i, %i B) carry packet id and timestamp', (qos, size) => {
    const t = new PublishTemplate('devices/dev-000001/messages/events/', size, qos)
    const buf = Buffer.alloc(t.bytes.length * 2)
    let at = t.writeInto(buf, 0, 513, 1234.5)
    at = t.writeInto(buf, at, 65535, 99.25)
    const packets = parseAll(buf.subarray(0, at)) as mqttPacket.IPublishPacket[]
    expect(packets).toHaveLength(2)
    expect(packets[0]).toMatchObject({ cmd: 'publish', topic: 'devices/dev-000001/messages/events/', qos })
    expect(packets[0]!.payload).toHaveLength(size)
    if (qos) expect(packets.map((p) => p.messageId)).toEqual([513, 65535])
    expect((packets[1]!.payload as Buffer).readDoubleLE(0)).toBe(99.25)
  })

  it('the reader splits a stream cut anywhere', () => {
    const t = new PublishTemplate('devices/d/messages/events/', 64, 1)
    const publish = Buffer.alloc(t.bytes.length)
    t.writeInto(publish, 0, 9, 1)
    const stream = Buffer.concat([Buffer.from([0x20, 2, 0, 0]), pubackPacket(5), pubackPacket(6), publish, Buffer.from([0xd0, 0])])
    for (let cut = 1; cut < stream.length; cut++) {
      const seen: Incoming[] = []
      const r = new PacketReader()
      r.push(stream.subarray(0, cut), (p) => seen.push({ ...p, buf: undefined }))
      r.push(stream.subarray(cut), (p) => seen.push({ ...p, buf: undefined }))
      expect(seen.map((p) => [p.type, p.value])).toEqual([[2, 0], [4, 5], [4, 6], [3, 9], [13, 0]])
    }
  })
})

describe('latency histogram', () => {
  it('percentiles are within its bucket error of the exact ones', () => {
    const h = new Histogram()
    const values = Array.from({ length: 100_000 }, (_, i) => 50 + ((i * 7919) % 20_000)) // µs, spread
    for (const v of values) h.record(v)
    const sorted = [...values].sort((a, b) => a - b)
    for (const q of [0.5, 0.99, 0.999]) {
      const exact = sorted[Math.ceil(q * sorted.length) - 1]! / 1000
      const got = h.percentileMs(q)!
      expect(got).toBeGreaterThanOrEqual(exact)
      expect(got).toBeLessThan(exact * 1.07)
    }
    const merged = new Histogram()
    merged.merge(h.counts)
    expect(merged.percentileMs(0.99)).toBe(h.percentileMs(0.99))
    expect(new Histogram().percentileMs(0.5)).toBeNull()
  })
})
