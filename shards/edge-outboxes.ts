// Where a shard's ops for the edge go. What concerns one connection (its acks, its finished
// telemetry, its session open, a PUBLISH for it) goes to the thread that holds the connection
// (threadOfConnection), straight over that thread's port; the rest goes to the main thread. Each
// destination gets one batch per flush.
import type { MessagePort } from 'node:worker_threads'
import {
  OP_ACKS, OP_PUBLISH, OP_REJECTED, OP_ROUTE_BARRIER_PASSED, OP_SESSION_OPENED, OP_SUBSCRIBED, OP_TELEMETRY_DONE, postBatch, threadOfConnection,
} from '../src/shard-protocol.js'

type Port = { postMessage(value: unknown, transfer: ArrayBuffer[]): void }

export class EdgeOutboxes {
  /** index 0: the main thread; k: I/O thread k */
  private readonly ports: (Port | undefined)[]
  private pending: unknown[][][] = [[]]
  private ioThreads = 0

  constructor(main: Port, private readonly packr: { pack(v: unknown): Uint8Array }) {
    this.ports = [main]
  }

  attach(thread: number, port: MessagePort): void {
    this.ports[thread] = port
    this.pending[thread] ??= []
    this.ioThreads++
  }

  get empty(): boolean {
    for (const ops of this.pending) if (ops && ops.length > 0) return false
    return true
  }

  push(op: unknown[]): void {
    // no I/O threads: every connection is on the main thread
    if (this.ioThreads === 0) { this.pending[0]!.push(op); return }
    switch (op[0]) {
      case OP_SESSION_OPENED: case OP_REJECTED: case OP_PUBLISH: case OP_SUBSCRIBED:
        this.to(threadOfConnection(op[1] as number)).push(op)
        return
      case OP_ROUTE_BARRIER_PASSED: this.to(op[1] as number).push(op); return
      case OP_ACKS: return this.split(op, 2)
      case OP_TELEMETRY_DONE: return this.split(op, 3)
      default: this.pending[0]!.push(op)
    }
  }

  /** Posts every destination's batch. */
  flush(): void {
    for (let t = 0; t < this.pending.length; t++) {
      const ops = this.pending[t]
      if (!ops || ops.length === 0) continue
      this.pending[t] = []
      postBatch(this.ports[t]!, this.packr, ops)
    }
  }

  /** The thread's batch; a thread that never attached (it cannot hold connections) gets the main thread's. */
  private to(thread: number): unknown[][] {
    return this.ports[thread] ? this.pending[thread]! : this.pending[0]!
  }

  /** A flat op of [connId, ...] groups of `width` numbers: one op per thread, groups kept in order. */
  private split(op: unknown[], width: number): void {
    const parts = new Map<unknown[][], unknown[]>()
    for (let i = 1; i + width - 1 < op.length; i += width) {
      const batch = this.to(threadOfConnection(op[i] as number))
      let part = parts.get(batch)
      if (!part) parts.set(batch, (part = [op[0]]))
      for (let j = 0; j < width; j++) part.push(op[i + j])
    }
    for (const [batch, part] of parts) batch.push(part)
  }
}
