// An I/O thread's side of the shards: a port to each shard, one batch per shard per event-loop turn
// (as the main thread's ShardPool), and the shards' ops for this thread's connections handed to its
// edge. While the main thread admits traffic (a tier or a fault applies), ops go through it instead,
// all of them, so that one connection's ops reach its shard in the order they were sent.
import type { MessagePort } from 'node:worker_threads'
import { Packr } from 'msgpackr'
import { dispatchShardOp, type ShardEvents } from '../shard-dispatch.js'
import { postBatch, shardOf, type ControlMessage } from '../shard-protocol.js'
import type { IoShardSender } from './io-edge.js'

export class IoShardLink implements IoShardSender {
  onMain = false
  private outgoing: unknown[][][]
  private viaMain: [number, unknown[]][] = []
  private flushScheduled = false
  private readonly packr = new Packr({ useRecords: false })
  private stoppedShards = 0
  private whenAllStopped: (() => void) | undefined

  constructor(private readonly ports: MessagePort[], private readonly partitions: number,
    /** what goes through the main thread */
    private readonly sendViaMain: (ops: [number, unknown[]][]) => void) {
    this.outgoing = ports.map(() => [])
  }

  /** The shards' ops go to `events` from now on. */
  listen(events: ShardEvents): void {
    for (const port of this.ports) {
      port.on('message', (m: Uint8Array | ControlMessage) => {
        if (!(m instanceof Uint8Array)) {
          if (m.type === 'stopped' && ++this.stoppedShards === this.ports.length) this.whenAllStopped?.()
          return
        }
        for (const op of this.packr.unpack(m) as unknown[][]) {
          try {
            dispatchShardOp(op, events)
          } catch (e) {
            events.log('error', 'a shard message could not be handled', { op: op[0], error: e as Error })
          }
        }
      })
    }
  }

  /** Resolves once every shard sent its last batch to this thread (they do as they stop). */
  allStopped(): Promise<void> {
    if (this.stoppedShards === this.ports.length) return Promise.resolve()
    return new Promise((resolve) => { this.whenAllStopped = resolve })
  }

  shardFor(deviceId: string): number {
    return shardOf(deviceId, this.partitions, this.ports.length)
  }

  send(shard: number, op: unknown[]): void {
    if (this.onMain) this.viaMain.push([shard, op])
    else this.outgoing[shard]!.push(op)
    if (!this.flushScheduled) {
      this.flushScheduled = true
      setImmediate(() => this.flush())
    }
  }

  flush(): void {
    this.flushScheduled = false
    for (let i = 0; i < this.ports.length; i++) {
      const ops = this.outgoing[i]!
      if (ops.length === 0) continue
      this.outgoing[i] = []
      postBatch(this.ports[i]!, this.packr, ops)
    }
    if (this.viaMain.length > 0) {
      const ops = this.viaMain
      this.viaMain = []
      this.sendViaMain(ops)
    }
  }
}
