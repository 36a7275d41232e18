// AMQP throughput against the real hub process: events/s delivered to one EventHubConsumerClient
// reading the built-in endpoint (maxBatchSize raised: its default of 1 caps any server at ~66/s), and
// C2D sends/s from azure-iothub's Client with 100 in flight to devices that acknowledge at once.
// Usage: npm run bench:amqp [-- --events 200000 --seconds 5]
// Loopback only; every loop is bounded in count and time.
import { parseArgs } from 'node:util'
import { EventHubConsumerClient, earliestEventPosition } from '@azure/event-hubs'
import azureIothub from 'azure-iothub'
import azureIotCommon from 'azure-iot-common'
import { spawnHub, type HubProcess } from '../test/helpers/hub-process.js'
import { seedPki, tempDir } from '../test/helpers/test-hub.js'
import { hubCredentials, deviceIds, provisionDevices } from './load/provision.js'
import { connectPacket, PacketReader, PUBLISH, pubackPacket, subscribePacket, CONNACK, SUBACK } from './load/mqtt-wire.js'
import { openPipe } from './load/transport.js'
import { runPublishers } from './load/publisher.js'

// Both official clients trust a CA only through NODE_EXTRA_CA_CERTS, read when Node starts
if (!process.env.NODE_EXTRA_CA_CERTS) {
  console.error('run it as `npm run bench:amqp` (it sets NODE_EXTRA_CA_CERTS to the test CA the hub is given)')
  process.exit(2)
}

const { values } = parseArgs({ options: { events: { type: 'string', default: '200000' }, seconds: { type: 'string', default: '5' } } })
// CommonJS packages: their named exports are read off the default export under plain Node ESM
const { Client } = azureIothub
const { Message } = azureIotCommon
const KEY = Buffer.from('hyperhub-bench-shared-device-key').toString('base64')
const dataDir = tempDir('hyperhub-amqp-bench-')
seedPki(dataDir)
const hub: HubProcess = await spawnHub(dataDir, ['--amqp-port', '18971'])
try {
  const ids = deviceIds(100)
  await provisionDevices({ httpsPort: hub.ports.https, ownerKey: hub.ownerKey, ids, deviceKey: KEY })

  // 1. fill the built-in endpoint, then read it all back through the Event Hubs client
  const target = Number(values.events)
  const per = Math.ceil(target / ids.length)
  await runPublishers({
    target: { host: '127.0.0.1', port: hub.ports.mqttTcp, transport: 'tcp' }, devices: ids.map((id) => hubCredentials(id, KEY)),
    qos: 1, window: 10, payloadBytes: 256, rate: 0, warmupMs: 0, durationMs: Math.max(1000, (per / 1500) * 1000), connectConcurrency: 100,
    qos0Batch: 16, qos0Window: 1000, drainMs: 15_000,
  })
  const total = (await hub.rest('GET', '/messages/events/partitions')).body.reduce((s: number, p: { lastEnqueuedSequenceNumber: number }) => s + p.lastEnqueuedSequenceNumber + 1, 0)
  const consumer = new EventHubConsumerClient('$Default', hub.eventHubsConnectionString!.replace('SharedAccessKeyName=service;SharedAccessKey=', 'SharedAccessKeyName=service;SharedAccessKey='))
  let received = 0
  let errors = 0
  const t0 = Date.now()
  await new Promise<void>((resolve) => {
    const deadline = setTimeout(() => { void sub.close().then(resolve) }, 120_000)
    const sub = consumer.subscribe({
      processEvents: async (events) => {
        received += events.length
        if (received >= total) { clearTimeout(deadline); await sub.close(); resolve() }
      },
      processError: async (err) => { if (errors++ < 3) console.error(`event hubs error: ${err.message}`) },
    }, { startPosition: earliestEventPosition, maxBatchSize: 1000, prefetchCount: 3000, maxWaitTimeInSeconds: 1 })
  })
  const ehSeconds = (Date.now() - t0) / 1000
  await consumer.close()
  console.log(`event hubs: ${received}/${total} events in ${ehSeconds.toFixed(1)} s = ${Math.round(received / ehSeconds)} events/s (one EventHubConsumerClient, 4 partitions, maxBatchSize 1000, prefetch 3000)`)

  // 2. C2D: devices subscribed and acknowledging at once; the service client keeps 100 sends in flight
  let delivered = 0
  for (const id of ids) {
    const reader = new PacketReader()
    const c = hubCredentials(id, KEY)
    let ready: () => void = () => {}
    const subscribed = new Promise<void>((r) => { ready = r })
    const pipe = await openPipe({ host: '127.0.0.1', port: hub.ports.mqttTcp, transport: 'tcp' }, (b) => reader.push(b, (p) => {
      if (p.type === CONNACK) pipe.write(subscribePacket(1, `devices/${id}/messages/devicebound/#`, 1))
      else if (p.type === SUBACK) ready()
      else if (p.type === PUBLISH) { delivered++; pipe.write(pubackPacket(p.value)) }
    }), () => {})
    pipe.write(connectPacket({ clientId: c.clientId, username: c.username, password: c.password, keepalive: 300, clean: false }))
    await subscribed
  }
  const service = Client.fromConnectionString(`HostName=localhost:18971;SharedAccessKeyName=iothubowner;SharedAccessKey=${hub.ownerKey}`)
  await service.open()
  let sent = 0, failed = 0, next = 0
  const until = Date.now() + Number(values.seconds) * 1000
  const s0 = Date.now()
  await Promise.all(Array.from({ length: 100 }, async () => {
    while (Date.now() < until) {
      const id = ids[next++ % ids.length]!
      try { await service.send(id, new Message('x'.repeat(64))); sent++ } catch { failed++ }
    }
  }))
  const c2dSeconds = (Date.now() - s0) / 1000
  const settle = Date.now() + 10_000
  while (delivered < sent && Date.now() < settle) await new Promise((r) => setTimeout(r, 50))
  await service.close()
  console.log(`c2d over amqp: ${sent} sent (${failed} failed) in ${c2dSeconds.toFixed(1)} s = ${Math.round(sent / c2dSeconds)} sends/s with 100 in flight; ${delivered} delivered to devices`)
} finally {
  hub.child.kill('SIGTERM')
  await hub.exited
}
process.exit(0)
