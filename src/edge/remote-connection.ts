// The main thread's stand-in for a connection an I/O thread holds. The main edge keeps it in its
// tables like any connection, so takeover, presence, direct methods and the registry's and policies'
// closes work unchanged; what it is asked to do goes to its I/O thread as a command. Its traffic
// never passes here (the I/O thread and the shard exchange it), so the data-path calls are no-ops.
import type { DeviceIdentity } from '../auth/authenticator.js'
import type { EdgeConnection, EdgeConnectionState } from './edge-connection.js'
import type { IoCommand } from './io-protocol.js'

export interface RemoteConnectionInit {
  id: number
  ioThread: number
  identity: DeviceIdentity
  clientId: string
  deviceId: string
  clean: boolean
  modelId: string
  transportKind: string
  acceptedAt: number
  lastPacketAt: number
}

export class RemoteConnection implements EdgeConnection {
  readonly id: number
  readonly ioThread: number
  state: EdgeConnectionState = 'authenticating'
  readonly identity: DeviceIdentity
  readonly clientId: string
  readonly deviceId: string
  readonly clean: boolean
  readonly modelId: string
  readonly transportKind: string
  readonly acceptedAt: number
  lastPacketAt: number
  shard = -1
  // the I/O thread keeps its own keep-alive, write deadline and reading state
  readonly keepAliveMs = 0
  readonly readingPaused = false
  readonly writeBlockedFor = 0
  subscriptions: ReadonlySet<string> = new Set()

  constructor(init: RemoteConnectionInit, private readonly send: (c: IoCommand) => void,
    /** the main edge forgets it (its closed()) */
    private readonly forget: (conn: RemoteConnection, reason: string) => void) {
    this.id = init.id
    this.ioThread = init.ioThread
    this.identity = init.identity
    this.clientId = init.clientId
    this.deviceId = init.deviceId
    this.clean = init.clean
    this.modelId = init.modelId
    this.transportKind = init.transportKind
    this.acceptedAt = init.acceptedAt
    this.lastPacketAt = init.lastPacketAt
  }

  sessionOpened(_present: boolean, filters: string[], errorCode = 0): void {
    if (errorCode !== 0) return // the I/O thread refuses it and reports the close
    this.state = 'connected'
    this.subscriptions = new Set(filters)
  }

  deliver(topic: string, payload: Uint8Array): void {
    this.send({ t: 'deliver', connId: this.id, topic, payload })
  }

  methodRequest(name: string, rid: string, payload: Buffer): void {
    this.send({ t: 'method', connId: this.id, name, rid, payload })
  }

  throttled(code: number, message: string, packetId?: number): void {
    this.send({ t: 'throttled', connId: this.id, code, message, ...(packetId !== undefined ? { packetId } : {}) })
  }

  pauseReadingFor(ms: number): void {
    this.send({ t: 'pause-for', connId: this.id, ms })
  }

  /** Closed from here (a takeover, the registry, a policy): the I/O thread closes the socket; this thread forgets it now. */
  close(reason: string): void {
    if (this.state === 'closed') return
    this.send({ t: 'close', connId: this.id, reason })
    this.forget(this, reason)
  }

  // the data path runs on the I/O thread
  acked(): void {}
  refused(): void {}
  telemetrySent(): void {}
  telemetryFinished(): void {}
  subscriptionStored(): void {}
  hold(): void {}
  stopReading(): void {}
}
