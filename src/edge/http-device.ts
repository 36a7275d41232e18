// Device telemetry over HTTPS (azure-iot-device-http): each request's messages enter the same ingest
// path as MQTT's and AMQP's (edge.telemetry: throttles, metering, the shards' commit), and the answer
// leaves once the shard committed them. A device that posts gets a channel of the edge bound to it
// with no session: unlike a connection it takes nothing over, and the device stays as connected or
// not as it was. Channels of devices that stop posting are let go.
import type { DeviceIdentity } from '../auth/authenticator.js'
import { HubError } from '../rest/hub-error.js'
import { moduleKey, OP_BIND_SENDER } from '../shard-protocol.js'
import type { ShardPool } from '../shard-pool.js'
import type { DeviceEdge } from './device-edge.js'
import type { EdgeConnection, EdgeConnectionState } from './edge-connection.js'

/** one message of a request */
export interface HttpTelemetry { bag: string; body: Buffer }

/** messages one device may have waiting for their commit over HTTPS at once */
const MAX_PENDING_PER_DEVICE = 2000
/** a channel nobody posted on for this long is let go */
const IDLE_MS = 60_000

class HttpDeviceChannel implements EdgeConnection {
  readonly id: number
  state: EdgeConnectionState = 'connected'
  readonly clean = false
  readonly modelId = ''
  shard: number
  readonly transportKind = 'https'
  readonly acceptedAt = Date.now()
  readonly keepAliveMs = 0
  lastPacketAt = Date.now()
  readonly readingPaused = false
  readonly writeBlockedFor = 0
  readonly subscriptions = new Set<string>()
  private nextPacketId = 1
  readonly pending = new Map<number, { resolve: () => void; reject: (e: HubError) => void }>()

  constructor(private readonly edge: DeviceEdge, shards: ShardPool, public identity: DeviceIdentity) {
    this.id = edge.newConnectionId()
    this.shard = shards.shardFor(identity.device.deviceId)
    edge.register(this)
    const m = identity.module
    shards.send(this.shard, [OP_BIND_SENDER, this.id, identity.device.deviceId, m?.generationId ?? identity.device.generationId, identity.authMethod, m?.moduleId ?? ''])
  }

  get clientId(): string { return '' }
  get deviceId(): string { return this.identity.device.deviceId }

  /** Sends one message; resolves once it is committed. */
  send(m: HttpTelemetry): Promise<void> {
    if (this.pending.size >= MAX_PENDING_PER_DEVICE) return Promise.reject(new HubError(429001, `more than ${MAX_PENDING_PER_DEVICE} messages of this device are waiting for their commit`))
    const packetId = this.nextPacketId
    this.nextPacketId = this.nextPacketId >= 0x7fffffff ? 1 : this.nextPacketId + 1
    this.lastPacketAt = Date.now()
    return new Promise((resolve, reject) => {
      this.pending.set(packetId, { resolve, reject })
      this.edge.telemetry(this, packetId, m.bag, m.body, null)
    })
  }

  acked(packetIds: number[]): void {
    for (const id of packetIds) {
      const p = this.pending.get(id)
      this.pending.delete(id)
      p?.resolve()
    }
  }

  refused(packetId: number, code: number, message: string): void {
    const p = this.pending.get(packetId)
    this.pending.delete(packetId)
    p?.reject(new HubError(code, message))
  }

  throttled(code: number, message: string, packetId?: number): void {
    if (packetId !== undefined) this.refused(packetId, code, message)
  }

  // what a connection does that a channel has no use for
  sessionOpened(): void {}
  telemetrySent(): void {}
  telemetryFinished(): void {}
  deliver(): void {}
  methodRequest(): void {}
  subscriptionStored(): void {}
  hold(): void {}
  pauseReadingFor(): void {}
  stopReading(): void {}

  close(reason: string): void {
    if (this.state === 'closed') return
    this.state = 'closed'
    for (const p of this.pending.values()) p.reject(new HubError(503001, `the message was not stored: ${reason}`))
    this.pending.clear()
    this.edge.closedChannel(this)
  }
}

export class HttpDevices {
  private readonly channels = new Map<string, HttpDeviceChannel>()
  private readonly sweepTimer: NodeJS.Timeout

  constructor(private readonly edge: DeviceEdge, private readonly shards: ShardPool) {
    this.sweepTimer = setInterval(() => this.sweep(), IDLE_MS / 2)
    this.sweepTimer.unref()
  }

  /** Sends a request's messages, in order; resolves once all are committed, or rejects with the first refusal. */
  async post(identity: DeviceIdentity, messages: HttpTelemetry[]): Promise<void> {
    const channel = this.channel(identity)
    await Promise.all(messages.map((m) => channel.send(m)))
  }

  close(): void {
    clearInterval(this.sweepTimer)
    for (const c of [...this.channels.values()]) c.close('hub shutting down')
  }

  private channel(identity: DeviceIdentity): HttpDeviceChannel {
    // a device's channel, or a module's (under `{device}/{module}`)
    const id = identity.module ? moduleKey(identity.device.deviceId, identity.module.moduleId) : identity.device.deviceId
    const existing = this.channels.get(id)
    // a device (or module) created again under the same id is another one to the shard
    if (existing && existing.state !== 'closed' && existing.identity.device.generationId === identity.device.generationId
      && existing.identity.module?.generationId === identity.module?.generationId) {
      existing.identity = identity
      return existing
    }
    existing?.close('the device changed')
    const c = new HttpDeviceChannel(this.edge, this.shards, identity)
    this.channels.set(id, c)
    return c
  }

  private sweep(): void {
    const now = Date.now()
    for (const [id, c] of this.channels) {
      if (c.pending.size > 0 || now - c.lastPacketAt < IDLE_MS) continue
      this.channels.delete(id)
      c.close('idle')
    }
  }
}
