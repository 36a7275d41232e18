// What crosses between the main thread and the I/O threads (io-threads.ts, io-thread.ts). Sockets,
// TLS, framing and each connection's protocol state are the I/O thread's; the main thread keeps what
// the whole hub must agree on: credentials (the registry), one connection per client id, presence,
// direct method calls, the tier's admissions. Telemetry, twins and C2D go between the I/O thread and
// the device's shard directly (shard-protocol.ts). Messages travel in one array per event-loop turn.

/** The identity an I/O thread's connection needs (no keys: those stay on the main thread). */
export interface SlimIdentity {
  deviceId: string
  generationId: string
  modelId?: string
  module?: { moduleId: string; generationId: string }
  authMethod: string
  expiry: number
}

export interface ListenSpec {
  host: string
  /** MQTT over TLS, and over TCP (null: off) */
  mqttPort: number
  mqttTcpPort: number | null
}

/** I/O thread → main thread. */
export type IoEvent =
  | { t: 'listening'; mqttPort: number; mqttFd: number; tcpPort: number | null; tcpFd: number | null }
  | { t: 'listen-failed'; what: 'mqttPort' | 'mqttTcpPort'; code: string }
  | { t: 'auth'; connId: number; deviceId: string; moduleId?: string; password?: string; certificates?: Uint8Array[]; fromResumedSession?: true }
  | { t: 'open'; connId: number; clientId: string; deviceId: string; clean: boolean; modelId: string; transportKind: string; acceptedAt: number; lastPacketAt: number }
  | { t: 'opened'; connId: number; present: boolean; filters: string[]; errorCode: number }
  | { t: 'subs'; connId: number; packetId: number; filters: string[] }
  | { t: 'closed'; connId: number; deviceId: string; transportKind: string; reason: string; fields?: Record<string, unknown>; wasConnected: boolean; lastPacketAt: number
      /** closed before its shard answered the open the main thread sent: the main thread sends these after it, in order */
      shardOps?: { shard: number; ops: unknown[][] } }
  | { t: 'method-response'; key: string; deviceId: string; rid: string; status: number; payload: Uint8Array }
  /** ops for the shards, sent through the main thread while it admits traffic (a tier or a fault applies) */
  | { t: 'shard-ops'; ops: [number, unknown[]][] }
  /** every 250 ms: last packet times of connections that were active, what was metered, counters for /metrics */
  | { t: 'report'; activity: number[]; billed: Record<string, [number, number]>; telemetryIn: Record<string, number>; deliveredOut: Record<string, number>; ackLatencies: number[]; queue: { messages: number; bytes: number } }
  | { t: 'log'; level: 'debug' | 'info' | 'warn' | 'error'; message: string; fields?: Record<string, unknown> }
  | { t: 'stopped-listening' }
  | { t: 'paused' }
  | { t: 'closed-all' }

/** Main thread → I/O thread. */
export type IoCommand =
  | { t: 'listen'; spec: ListenSpec }
  | { t: 'listen-fd'; mqttFd: number; tcpFd: number | null }
  | { t: 'auth-ok'; connId: number; identity: SlimIdentity }
  | { t: 'auth-failed'; connId: number; message: string; failure: string }
  | { t: 'close'; connId: number; reason: string }
  /** the main thread shows the connection connected: its CONNACK may leave */
  | { t: 'presence-recorded'; connId: number }
  /** the main thread knows the connection's subscriptions: its SUBACK / UNSUBACK may leave */
  | { t: 'subs-recorded'; connId: number; packetId: number }
  | { t: 'throttled'; connId: number; code: number; message: string; packetId?: number }
  | { t: 'pause-for'; connId: number; ms: number }
  | { t: 'deliver'; connId: number; topic: string; payload: Uint8Array }
  | { t: 'method'; connId: number; name: string; rid: string; payload: Uint8Array }
  /** a message the main thread did not admit: the I/O thread's window for it is released */
  | { t: 'telemetry-dropped'; connId: number; bytes: number }
  /** whether shard ops go through the main thread (it admits them); the faults that delay acks */
  | { t: 'admission'; onMain: boolean; meterChunkBytes: number; faults: import('../throttle/faults.js').Fault[] }
  /** the main thread rotated the session ticket keys (secret: never logged) */
  | { t: 'ticket-keys'; keys: import('../tls/ticket-keys.js').TicketKeysSnapshot }
  | { t: 'stop-listening' }
  | { t: 'pause-reading' }
  | { t: 'close-all'; reason: string }

/** Collects messages for one port and posts them as one array after this turn. */
export class PortBatcher<T> {
  private queue: T[] = []
  private scheduled = false

  constructor(private readonly port: { postMessage(m: unknown, transfer?: ArrayBuffer[]): void }) {}

  post(m: T): void {
    this.queue.push(m)
    if (this.scheduled) return
    this.scheduled = true
    setImmediate(() => this.flush())
  }

  flush(): void {
    this.scheduled = false
    if (this.queue.length === 0) return
    const q = this.queue
    this.queue = []
    this.port.postMessage(q)
  }
}
