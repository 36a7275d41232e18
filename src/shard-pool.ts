// The edge's side of the shards: one worker thread per shard, one outgoing batch per shard per
// event-loop turn, and the dispatch of what the shards send back.
import type { Worker } from 'node:worker_threads'
import { tsWorker } from './ts-worker.js'
import { Packr } from 'msgpackr'
import { HubError } from './rest/hub-error.js'
import { MessageChannel, type MessagePort } from 'node:worker_threads'
import {
  moduleKey, OP_REPLY, OP_REQUEST, postBatch, shardOf,
  type ControlMessage, type ShardInit, type ShardRequestKind,
} from './shard-protocol.js'
import { dispatchShardOp, type ShardEvents } from './shard-dispatch.js'

export type { ShardEvents } from './shard-dispatch.js'

export class ShardPool {
  private readonly workers: Worker[] = []
  private readonly outgoing: unknown[][][] = []
  private flushScheduled = false
  private readonly packr = new Packr({ useRecords: false })
  private stopping = false
  private nextRequestId = 1
  private readonly pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>()

  constructor(private readonly init: Omit<ShardInit, 'shardIndex'>, private readonly events: ShardEvents) {}

  async start(): Promise<void> {
    const ready: Promise<void>[] = []
    for (let i = 0; i < this.init.shardCount; i++) {
      // the worker is TypeScript: run it through the same loader as the hub
      const worker = tsWorker(new URL('../shards/shard-worker.ts', import.meta.url), { workerData: { ...this.init, shardIndex: i } })
      this.workers.push(worker)
      this.outgoing.push([])
      ready.push(new Promise((resolve, reject) => {
        const onReady = (m: unknown) => { if ((m as ControlMessage).type === 'ready') { worker.off('message', onReady); resolve() } }
        worker.on('message', onReady)
        worker.once('error', reject)
      }))
      worker.on('message', (m: Uint8Array | ControlMessage) => { if (m instanceof Uint8Array) this.dispatch(m) })
      worker.on('error', (e) => this.events.fatal(i, e))
      worker.on('exit', (code) => { if (!this.stopping) this.events.fatal(i, new Error(`shard ${i} exited with code ${code}`)) })
    }
    await Promise.all(ready)
  }

  /**
   * A channel from each shard to I/O thread `thread`: the shards send its connections' ops there,
   * and it sends its connections' ops to them, with no step through the main thread.
   */
  connectIoThread(thread: number): MessagePort[] {
    return this.workers.map((w) => {
      const { port1, port2 } = new MessageChannel()
      w.postMessage({ type: 'io-thread', thread, port: port1 } satisfies ControlMessage, [port1])
      return port2
    })
  }

  shardFor(deviceId: string): number {
    return shardOf(deviceId, this.init.partitions, this.init.shardCount)
  }

  send(shard: number, op: unknown[]): void {
    this.outgoing[shard]!.push(op)
    if (!this.flushScheduled) {
      this.flushScheduled = true
      // after this turn's socket reads: everything they produced goes in one message per shard
      setImmediate(() => this.flush())
    }
  }

  /**
   * A request the shard owning the device answers (REST handlers need the device's state, which
   * only its shard holds). Rides the same batches as everything else; rejects with the shard's HubError.
   */
  request<T = unknown>(kind: ShardRequestKind, deviceId: string, ...args: unknown[]): Promise<T> {
    return this.requestShard<T>(this.shardFor(deviceId), kind, deviceId, ...args)
  }

  /** A request about a device's module: its state lives in the device's shard, under `{deviceId}/{moduleId}`. */
  requestForModule<T = unknown>(kind: ShardRequestKind, deviceId: string, moduleId: string, ...args: unknown[]): Promise<T> {
    return this.requestShard<T>(this.shardFor(deviceId), kind, moduleKey(deviceId, moduleId), ...args)
  }

  /** The same request to every shard (hub-wide settings such as routing); resolves when all applied it. */
  broadcast(kind: ShardRequestKind, ...args: unknown[]): Promise<unknown[]> {
    return Promise.all(this.workers.map((_, i) => this.requestShard(i, kind, '', ...args)))
  }

  private requestShard<T>(shard: number, kind: ShardRequestKind, deviceId: string, ...args: unknown[]): Promise<T> {
    if (this.stopping) return Promise.reject(new HubError(503001, 'hub is shutting down'))
    const id = this.nextRequestId++
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject })
      this.send(shard, [OP_REQUEST, id, kind, deviceId, ...args])
    })
  }

  flush(): void {
    this.flushScheduled = false
    for (let i = 0; i < this.workers.length; i++) {
      const ops = this.outgoing[i]!
      if (ops.length === 0) continue
      this.outgoing[i] = []
      postBatch(this.workers[i]!, this.packr, ops)
    }
  }

  private dispatch(buf: Uint8Array): void {
    const ops = this.packr.unpack(buf) as unknown[][]
    for (const op of ops) {
      // one op that fails (a bug, a client's odd input) must not take the ops after it, or the hub, with it
      try {
        this.dispatchOne(op)
      } catch (e) {
        this.events.log('error', 'a shard message could not be handled', { op: op[0], error: e as Error })
      }
    }
  }

  private dispatchOne(op: unknown[]): void {
    if (op[0] !== OP_REPLY) return dispatchShardOp(op, this.events)
    const p = this.pending.get(op[1] as number)
    if (!p) return
    this.pending.delete(op[1] as number)
    if (op[2] === 0) p.resolve(op[3])
    else p.reject(new HubError(op[2] as number, op[3] as string))
  }

  /** Sends what is queued, lets each shard finish its commits (their acks arrive first), then ends them. */
  async stop(): Promise<void> {
    this.flush()
    this.stopping = true
    // requests already flushed are still answered by the shards before they stop: only what is
    // left unanswered after that fails
    await Promise.all(this.workers.map((w) => new Promise<void>((resolve) => {
      const timer = setTimeout(() => { void w.terminate().then(() => resolve()) }, 10_000)
      w.on('message', (m: unknown) => {
        if ((m as ControlMessage).type === 'stopped') { clearTimeout(timer); void w.terminate().then(() => resolve()) }
      })
      w.postMessage({ type: 'stop' } satisfies ControlMessage)
    })))
    for (const p of this.pending.values()) p.reject(new HubError(503001, 'hub is shutting down'))
    this.pending.clear()
  }
}
