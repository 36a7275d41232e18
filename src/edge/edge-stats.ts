// What the device edge counts for operators (/metrics): telemetry in and messages out per transport,
// and the time from a QoS 1 message's arrival to its acknowledgement (after the commit), sampled one
// message in SAMPLE_EVERY so the hot path pays a counter increment and, rarely, a map entry.
import type { EdgeConnection } from './edge-connection.js'

const SAMPLE_EVERY = 64
/** sampled messages awaiting their ack at most (a connection that never gets acks cannot grow it) */
const MAX_SAMPLES = 1024

export class EdgeStats {
  readonly telemetryIn: Record<string, number> = Object.create(null)
  readonly deliveredOut: Record<string, number> = Object.create(null)
  throttledTelemetry = 0
  private n = 0
  private readonly samples = new Map<number, number>()

  constructor(private readonly onAckLatency: (seconds: number) => void = () => {}) {}

  telemetry(conn: EdgeConnection, packetId: number): void {
    this.telemetryIn[conn.transportKind] = (this.telemetryIn[conn.transportKind] ?? 0) + 1
    if (packetId === 0 || ++this.n < SAMPLE_EVERY || this.samples.size >= MAX_SAMPLES) return
    this.n = 0
    this.samples.set(conn.id * 65536 + (packetId & 0xffff), performance.now())
  }

  acked(connId: number, packetId: number): void {
    if (this.samples.size === 0) return
    const key = connId * 65536 + (packetId & 0xffff)
    const at = this.samples.get(key)
    if (at === undefined) return
    this.samples.delete(key)
    this.onAckLatency((performance.now() - at) / 1000)
  }

  /** A connection closed: its samples will never be acked. */
  forget(connId: number): void {
    if (this.samples.size === 0) return
    for (const key of this.samples.keys()) if (Math.floor(key / 65536) === connId) this.samples.delete(key)
  }

  /** Counts and latency samples an I/O thread reported. */
  merge(telemetryIn: Record<string, number>, deliveredOut: Record<string, number>, ackLatencies: number[]): void {
    for (const [k, n] of Object.entries(telemetryIn)) this.telemetryIn[k] = (this.telemetryIn[k] ?? 0) + n
    for (const [k, n] of Object.entries(deliveredOut)) this.deliveredOut[k] = (this.deliveredOut[k] ?? 0) + n
    for (const sec of ackLatencies) this.onAckLatency(sec)
  }

  delivered(transportKind: string): void {
    this.deliveredOut[transportKind] = (this.deliveredOut[transportKind] ?? 0) + 1
  }
}
