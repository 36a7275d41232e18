// An I/O thread's side of the shards: a port to each shard, one batch per shard per event-loop turn
// (as the main thread's ShardPool), and the shards' ops for this thread's connections handed to its
// edge. While the main thread admits traffic (a tier or a fault applies), ops go through it instead,
// all of them, so that one connection's ops reach its shard in the order they were sent. A switch
// between the two ways waits for a barrier each shard passes on the old way (two ports to a shard
// keep no order between them); ops meanwhile are held here, bounded by the edge's in-flight limits.
import type { MessagePort } from 'node:worker_threads'
import { Packr } from 'msgpackr'
import { dispatchShardOp, type ShardEvents } from '../shard-dispatch.js'
import { OP_ROUTE_BARRIER, OP_ROUTE_BARRIER_PASSED, postBatch, shardOf, type ControlMessage } from '../shard-protocol.js'
import type { IoShardSender } from './io-edge.js'

export class IoShardLink implements IoShardSender {
  private viaMainNow = false
  /** a switch under way: the ops sent since wait for every shard's barrier */
  private switching: { to: boolean; epoch: number; waiting: number; held: [number, unknown[]][] } | undefined
  private epoch = 0
  private outgoing: unknown[][][]
  private viaMain: [number, unknown[]][] = []
  private flushScheduled = false
  private readonly packr = new Packr({ useRecords: false })
  private stoppedShards = 0
  private whenAllStopped: (() => void) | undefined

  constructor(private readonly thread: number, private readonly ports: MessagePort[], private readonly partitions: number,
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
          if (op[0] === OP_ROUTE_BARRIER_PASSED) { this.barrierPassed(op[2] as number); continue }
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

  get onMain(): boolean {
    return this.switching ? this.switching.to : this.viaMainNow
  }

  setRoute(onMain: boolean): void {
    if (this.switching) { this.switching.to = onMain; return } // the barrier under way serves this one too
    if (onMain === this.viaMainNow) return
    this.epoch++
    for (let shard = 0; shard < this.ports.length; shard++) this.send(shard, [OP_ROUTE_BARRIER, this.thread, this.epoch])
    this.switching = { to: onMain, epoch: this.epoch, waiting: this.ports.length, held: [] }
  }

  private barrierPassed(epoch: number): void {
    const s = this.switching
    if (!s || s.epoch !== epoch || --s.waiting > 0) return
    this.switching = undefined
    this.viaMainNow = s.to
    for (const [shard, op] of s.held) this.send(shard, op)
  }

  send(shard: number, op: unknown[]): void {
    if (this.switching) { this.switching.held.push([shard, op]); return }
    if (this.viaMainNow) this.viaMain.push([shard, op])
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
