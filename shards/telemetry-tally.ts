// Telemetry a shard has finished with (stored, refused or dropped), counted per connection in
// messages and bytes, so the edge can bound what each connection and the whole hub have in flight.
import { OP_TELEMETRY_DONE } from '../src/shard-protocol.js'

export class TelemetryTally {
  private readonly byConn = new Map<number, [count: number, bytes: number]>()

  get size(): number { return this.byConn.size }

  add(connId: number, bytes: number): void {
    const t = this.byConn.get(connId)
    if (t) { t[0]++; t[1] += bytes } else this.byConn.set(connId, [1, bytes])
  }

  /** OP_TELEMETRY_DONE with [connId, count, bytes] for each connection, and a fresh tally. */
  take(): unknown[] | undefined {
    if (this.byConn.size === 0) return undefined
    const op: unknown[] = [OP_TELEMETRY_DONE]
    for (const [connId, [count, bytes]] of this.byConn) op.push(connId, count, bytes)
    this.byConn.clear()
    return op
  }
}
