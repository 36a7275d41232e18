// Raw-MQTT helpers for twin, method and C2D tests: a connected device on the hub's plain TCP port.
import type mqttPacket from 'mqtt-packet'
import { MqttTestClient } from './mqtt-test-client.js'
import type { TestHub } from './test-hub.js'

export async function connectDevice(t: TestHub, deviceId: string, opts: { clean?: boolean } = {}): Promise<MqttTestClient> {
  const existing = t.hub.registry.get(deviceId)
  const key = existing ? existing.authentication.symmetricKey.primaryKey! : (await t.createDevice(deviceId)).primaryKey
  const { client, connack } = await MqttTestClient.connect({ port: t.hub.ports.mqttTcp!, clientId: deviceId, password: t.deviceToken(deviceId, key), clean: opts.clean ?? false })
  if (connack.returnCode !== 0) throw new Error(`CONNACK ${connack.returnCode}`)
  return client
}

/** The next PUBLISH whose topic starts with prefix. */
export function nextPublish(client: MqttTestClient, prefix: string): Promise<mqttPacket.IPublishPacket> {
  return client.next('publish', (p: mqttPacket.IPublishPacket) => p.topic.startsWith(prefix)) as Promise<mqttPacket.IPublishPacket>
}

/** Every PUBLISH received so far whose topic starts with prefix. */
export function publishesSoFar(client: MqttTestClient, prefix: string): mqttPacket.IPublishPacket[] {
  return client.packets.filter((p) => p.cmd === 'publish' && (p as mqttPacket.IPublishPacket).topic.startsWith(prefix)) as mqttPacket.IPublishPacket[]
}

/** Sends a PUBLISH and waits for the twin response with the same $rid. */
export async function twinRequest(client: MqttTestClient, topic: string, payload: string, rid: string): Promise<{ status: number; topic: string; body: any }> {
  const res = nextPublish(client, '$iothub/twin/res/').then((p) => p) as Promise<mqttPacket.IPublishPacket>
  client.send({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 0, retain: false, dup: false } as mqttPacket.IPublishPacket)
  const p = await res
  if (!p.topic.includes(`$rid=${rid}`)) throw new Error(`response for another request: ${p.topic}`)
  const text = p.payload.toString()
  return { status: Number(p.topic.split('/')[3]), topic: p.topic, body: text ? JSON.parse(text) : undefined }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

export async function until<T>(f: () => Promise<T> | T, ok: (v: T) => boolean, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await f()
    if (ok(v) || Date.now() > deadline) return v
    await sleep(25)
  }
}
