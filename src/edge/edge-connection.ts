// What the device edge needs of a device's connection, whatever protocol carries it: MQTT
// (mqtt/device-connection.ts) or an AMQP device session (amqp/device-session.ts). The shards speak
// in MQTT's terms (topics, packet ids, subscriptions); each connection translates for its protocol.
import type { DeviceIdentity } from '../auth/authenticator.js'

export type EdgeConnectionState = 'awaiting-connect' | 'authenticating' | 'connected' | 'closed'

export interface EdgeConnection {
  readonly id: number
  readonly state: EdgeConnectionState
  readonly identity: DeviceIdentity | undefined
  /** one connection per client id: the newest takes over */
  readonly clientId: string
  readonly deviceId: string
  /** the session ends with the connection */
  readonly clean: boolean
  /** the IoT Plug and Play model id announced when connecting, or '' */
  readonly modelId: string
  /** the shard that owns this device, once the session is opened */
  shard: number
  /** `mqtt`, `mqtts`, `wss`, `amqps`, `amqpwss`: for logs */
  readonly transportKind: string
  readonly acceptedAt: number
  /** 0: the protocol has its own liveness check */
  readonly keepAliveMs: number
  lastPacketAt: number
  /** whether the hub stopped reading it (its silence is then not the client's) */
  readonly readingPaused: boolean
  /** how long what the hub wrote has waited for the client to read it (0: not waiting) */
  readonly writeBlockedFor: number
  /** topic filters of its session, in MQTT's terms */
  readonly subscriptions: ReadonlySet<string>
  /** the I/O thread that holds its socket and talks to its shard; absent: this thread does */
  readonly ioThread?: number

  /** the shard answered the session open (errorCode 0: stored) */
  sessionOpened(sessionPresent: boolean, filters: string[], errorCode?: number): void
  /** the shard committed these messages of this connection */
  acked(packetIds: number[]): void
  /** the shard did not store this message (MQTT cannot say so: it closes the connection) */
  refused(packetId: number, code: number, message: string): void
  /** the edge sent telemetry of this many bytes to the shard / the shard finished with it */
  telemetrySent(bytes: number): void
  telemetryFinished(bytes: number): void
  /** a shard's message to the device: C2D (qos 1, answered by c2dSettled), a twin answer or desired-properties patch */
  deliver(topic: string, payload: Uint8Array, qos: number, packetId: number, dup: boolean): void
  /** a direct method call for the device, answered through the edge's methods */
  methodRequest(methodName: string, rid: string, payload: Buffer): void
  /** a subscription change of this connection is stored (or failed) */
  subscriptionStored(packetId: number, errorCode: number): void
  /** the edge's hub-wide backpressure */
  hold(on: boolean): void
  /** the tier's traffic shaping queued this device's traffic: read nothing more for `ms` */
  pauseReadingFor(ms: number): void
  /**
   * A throttle or the daily quota refused it (429001 / 403002): before the session opens, the
   * connection is refused (MQTT: CONNACK 3); after, MQTT closes the connection as Azure does, AMQP
   * rejects that message (`packetId`) with the throttling condition
   */
  throttled(code: number, message: string, packetId?: number): void
  /** shutdown: read nothing more */
  stopReading(): void
  close(reason: string, fields?: Record<string, unknown>, graceful?: boolean): void
}

/** How a device settled a C2D message: MQTT's PUBACK completes; AMQP and HTTPS may also reject or abandon. */
export type C2dOutcome = 'complete' | 'reject' | 'abandon'
