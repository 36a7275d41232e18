// One simulated device for `hyperhub simulate`: MQTT 3.1.1 over TLS as the device SDKs speak it
// (client id = device id, SAS token as password), QoS 1 telemetry with a bounded window of
// unacknowledged messages.
import tls from 'node:tls'
import mqtt from 'mqtt-packet'

const PINGREQ = mqtt.generate({ cmd: 'pingreq' })

export interface DeviceCredentials { deviceId: string; username: string; password: string; topic: string }

/** Azure's CONNACK return codes, in words. */
const CONNACK_REFUSALS: Record<number, string> = {
  1: 'unacceptable protocol version', 2: 'identifier rejected', 3: 'server unavailable (throttled or busy)', 4: 'bad user name or password', 5: 'not authorized',
}

export class SimulatedDevice {
  /** messages sent and not yet acknowledged (QoS 1) */
  inFlight = 0
  acked = 0
  private nextPacketId = 1
  private closedWith: Error | undefined
  private closing = false
  /** a device that sends less often than the keep-alive still pings: the hub drops one silent for 1.5 × keep-alive */
  private pinger: NodeJS.Timeout | undefined

  private constructor(private readonly socket: tls.TLSSocket, readonly credentials: DeviceCredentials) {}

  static connect(o: { host: string; port: number; servername?: string; ca?: string; credentials: DeviceCredentials; keepaliveSeconds: number; onError(e: Error): void; timeoutMs?: number }): Promise<SimulatedDevice> {
    return new Promise((resolve, reject) => {
      const socket = tls.connect({ host: o.host, port: o.port, ...(o.servername ? { servername: o.servername } : {}), ...(o.ca ? { ca: o.ca } : {}) })
      const device = new SimulatedDevice(socket, o.credentials)
      const parser = mqtt.parser({ protocolVersion: 4 })
      let connected = false
      const timer = setTimeout(() => { socket.destroy(); reject(new Error(`${o.credentials.deviceId}: no CONNACK within ${(o.timeoutMs ?? 10_000) / 1000} s`)) }, o.timeoutMs ?? 10_000)
      parser.on('packet', (p) => {
        if (p.cmd === 'connack') {
          clearTimeout(timer)
          if (p.returnCode !== 0) {
            socket.destroy()
            return reject(new Error(`${o.credentials.deviceId}: the hub refused the connection (CONNACK ${p.returnCode}: ${CONNACK_REFUSALS[p.returnCode ?? 0] ?? 'refused'})`))
          }
          connected = true
          device.pinger = setInterval(() => { if (device.open) socket.write(PINGREQ) }, (o.keepaliveSeconds * 1000) / 2)
          device.pinger.unref()
          resolve(device)
        } else if (p.cmd === 'puback') {
          device.inFlight--
          device.acked++
        }
      })
      parser.on('error', (e) => socket.destroy(e))
      socket.on('data', (chunk) => parser.parse(chunk))
      socket.on('error', (e) => {
        clearTimeout(timer)
        if (!connected) reject(e)
        else device.closedWith ??= e
      })
      socket.on('close', () => {
        clearTimeout(timer)
        clearInterval(device.pinger)
        if (connected && !device.closedWith && !device.closing) {
          device.closedWith = new Error(`${o.credentials.deviceId}: the hub closed the connection`)
          o.onError(device.closedWith)
        }
      })
      socket.write(mqtt.generate({
        cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: false, keepalive: o.keepaliveSeconds,
        clientId: o.credentials.deviceId, username: o.credentials.username, password: Buffer.from(o.credentials.password),
      }))
    })
  }

  get open(): boolean { return !this.closedWith && !this.closing }

  /** false when the socket's buffer is past its high-water mark: the caller sends no more to this device until it drains */
  send(payload: Buffer, qos: 0 | 1): boolean {
    const messageId = this.nextPacketId
    this.nextPacketId = this.nextPacketId === 65535 ? 1 : this.nextPacketId + 1
    if (qos === 1) this.inFlight++
    return this.socket.write(mqtt.generate({ cmd: 'publish', topic: this.credentials.topic, payload, qos, messageId, retain: false, dup: false }))
  }

  get writable(): boolean { return !this.socket.writableNeedDrain }

  async close(): Promise<void> {
    this.closing = true
    if (this.socket.destroyed) return
    await new Promise<void>((resolve) => {
      this.socket.once('close', () => resolve())
      this.socket.end(mqtt.generate({ cmd: 'disconnect' }))
      setTimeout(() => this.socket.destroy(), 2000).unref()
    })
  }
}
