// The official azure-iothub service Client over AMQP: C2D sends reach an MQTT device, feedback comes
// back through getFeedbackReceiver, and failures arrive as the client's own error types.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Client } from 'azure-iothub'
import { Message } from 'azure-iot-common'
import type mqttPacket from 'mqtt-packet'
import { startTestHub, type TestHub } from './helpers/test-hub.js'
import { connectDevice, nextPublish } from './helpers/device-mqtt.js'

let t: TestHub
let client: Client
const clients: Client[] = []

beforeAll(async () => {
  if (!process.env.NODE_EXTRA_CA_CERTS) throw new Error('run through `npm test` (NODE_EXTRA_CA_CERTS)')
  t = await startTestHub()
  client = serviceClient()
  await client.open()
})
afterAll(async () => {
  for (const c of clients) await c.close().catch(() => {})
  await t.stop()
})

function serviceClient(key = t.policyKey('service'), policy = 'service'): Client {
  // a port in HostName works for the AMQP side of the client (not for its REST calls)
  const c = Client.fromConnectionString(`HostName=localhost:${t.hub.ports.amqp};SharedAccessKeyName=${policy};SharedAccessKey=${key}`)
  clients.push(c)
  return c
}

describe('azure-iothub Client over AMQP', () => {
  it('sends C2D to a device and returns its feedback', async () => {
    const device = await connectDevice(t, 'amqp-c2d')
    expect(await device.subscribe('devices/amqp-c2d/messages/devicebound/#', 1)).toEqual([1])
    const receiver = await new Promise<{ on(e: string, f: (m: { data: Buffer }) => void): void }>((resolve, reject) => {
      client.getFeedbackReceiver((err, r) => (err ? reject(err) : resolve(r as never)))
    })
    const feedback = new Promise<unknown[]>((resolve) => {
      receiver.on('message', (m) => resolve(JSON.parse(m.data.toString())))
    })
    const msg = new Message('turn on')
    msg.messageId = 'c2d-1'
    msg.ack = 'full'
    msg.properties.add('colour', 'blue/green')
    const arrived = nextPublish(device, 'devices/amqp-c2d/messages/devicebound/')
    await client.send('amqp-c2d', msg) // resolves on the hub's "accepted", after the queue committed
    const p = (await arrived) as mqttPacket.IPublishPacket
    expect(p.payload.toString()).toBe('turn on')
    const bag = new URLSearchParams(p.topic.split('/')[4])
    expect(bag.get('$.mid')).toBe('c2d-1')
    expect(bag.get('colour')).toBe('blue/green')
    device.send({ cmd: 'puback', messageId: p.messageId! })
    const records = await feedback
    expect(records).toEqual([expect.objectContaining({ originalMessageId: 'c2d-1', deviceId: 'amqp-c2d', statusCode: 'Success' })])
    await device.disconnect()
  })

  it('a C2D message near 64 KB crosses the hub\'s 64 KiB max-frame-size in two frames and arrives whole', async () => {
    const device = await connectDevice(t, 'amqp-big')
    expect(await device.subscribe('devices/amqp-big/messages/devicebound/#', 1)).toEqual([1])
    const body = Buffer.alloc(65_400, 0x61)
    const arrived = nextPublish(device, 'devices/amqp-big/messages/devicebound/')
    await client.send('amqp-big', new Message(body))
    const p = (await arrived) as mqttPacket.IPublishPacket
    expect(p.payload.length).toBe(body.length)
    expect(Buffer.from(p.payload).equals(body)).toBe(true)
    device.send({ cmd: 'puback', messageId: p.messageId! })
    await device.disconnect()
  })

  it('maps an unknown device and a full queue to the client\'s errors', async () => {
    await expect(client.send('nobody-here', new Message('x'))).rejects.toMatchObject({ name: 'DeviceNotFoundError' })
    await t.createDevice('amqp-full')
    for (let i = 0; i < 50; i++) await client.send('amqp-full', new Message(`m${i}`))
    await expect(client.send('amqp-full', new Message('one too many'))).rejects.toMatchObject({ name: 'DeviceMaximumQueueDepthExceededError' })
    expect((await t.rest('GET', '/devices/amqp-full')).body.cloudToDeviceMessageCount).toBe(50)
  })

  it('refuses a wrong key and a policy without ServiceConnect', async () => {
    await expect(serviceClient(Buffer.alloc(32, 3).toString('base64')).open()).rejects.toMatchObject({ amqpError: { name: 'UnauthorizedError' } })
    const readOnly = serviceClient(t.policyKey('registryRead'), 'registryRead')
    await expect(readOnly.open().then(() => readOnly.send('amqp-full', new Message('x')))).rejects.toMatchObject({ name: 'UnauthorizedError', amqpError: { condition: 'amqp:unauthorized-access' } })
  })
})
