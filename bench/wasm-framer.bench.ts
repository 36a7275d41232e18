// Framing 4 KB socket reads of 256-byte PUBLISH packets: WASM framer vs our JS MqttFramer vs
// mqtt-packet's parser.  Run: node --import tsx bench/wasm-framer.bench.ts [--time ms]
import mqttPacket from 'mqtt-packet'
import { Bench } from 'tinybench'
import { MqttFramer, type FrameHandler } from '../src/mqtt/framer.js'
import { WasmMqttFramer } from '../src/wasm/wasm-framer.js'

const timeArg = process.argv.indexOf('--time')
const time = timeArg > 0 ? Number(process.argv[timeArg + 1]) : 1500
const MAX = 256 * 1024 + 65_535 + 16

// 256 bytes on the wire: 3 header + 2 topic length + topic + 2 packet id + payload
const topic = 'devices/thermostat-1/messages/events/'
const packet = mqttPacket.generate({ cmd: 'publish', topic, payload: Buffer.alloc(256 - 3 - 2 - topic.length - 2, 0x61), qos: 1, messageId: 42, retain: false, dup: false } as any)
if (packet.length !== 256) throw new Error(`packet is ${packet.length} bytes`)
const stream = Buffer.concat(Array(64).fill(packet))
const aligned = [stream.subarray(0, 4096)] // 16 whole packets per read
// 16 KB in 4 reads cut mid-packet (and a whole number of packets, so every run starts clean)
const cuts = [0, 4000, 8100, 12200, 16384]
const straddling = cuts.slice(1).map((end, i) => stream.subarray(cuts[i], end))

let sink = 0
const handler: FrameHandler = {
  publish: (t, payload, qos, packetId) => { sink += t.length + payload.length + qos + packetId },
  other: (type) => { sink += type },
}

function mqttPacketRun(reads: Buffer[]): () => void {
  const parser = mqttPacket.parser({ protocolVersion: 4 })
  parser.on('packet', (p: any) => { sink += p.topic.length + p.payload.length + p.qos + p.messageId })
  return () => { for (const r of reads) parser.parse(r) }
}
function framerRun(framer: { push(c: Buffer, h: FrameHandler): void }, reads: Buffer[]): () => void {
  return () => { for (const r of reads) framer.push(r, handler) }
}

const scenarios = [
  { name: '4 KB read, 16 × 256 B PUBLISH', reads: aligned },
  { name: '16 KB in 4 reads cut mid-packet, 64 × 256 B PUBLISH', reads: straddling },
]
const bench = new Bench({ name: 'mqtt framing', time, warmup: true })
for (const s of scenarios) {
  bench.add(`${s.name} | JS MqttFramer`, framerRun(new MqttFramer(MAX), s.reads))
  bench.add(`${s.name} | mqtt-packet parser`, mqttPacketRun(s.reads))
  bench.add(`${s.name} | WASM framer`, framerRun(new WasmMqttFramer(MAX), s.reads))
}
await bench.run()
if (sink === 0) throw new Error('nothing was framed')

console.log(`\n| scenario | implementation | ops/s | mean ns | ± | WASM ÷ this (speed-up, >1 = WASM faster) |`)
console.log('|---|---|---:|---:|---:|---:|')
for (const s of scenarios) {
  const rows = bench.tasks.filter((t) => t.name.startsWith(s.name))
  const wasm = rows.find((t) => t.name.endsWith('WASM framer'))!.result
  for (const t of rows) {
    const r = t.result
    if (r.state !== 'completed' || wasm.state !== 'completed') throw new Error(`${t.name}: ${r.state}`)
    const impl = t.name.split(' | ')[1]
    const ratio = impl === 'WASM framer' ? '' : (r.period / wasm.period).toFixed(2)
    console.log(`| ${s.name} | ${impl} | ${Math.round(1000 / r.period).toLocaleString('en')} | ${Math.round(r.period * 1e6)} | ${r.latency.rme.toFixed(1)}% | ${ratio} |`)
  }
}
