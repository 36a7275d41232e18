// What the shards send the edge, handed to whoever holds the connections: the main thread's edge
// (shard-pool.ts) or an I/O thread's (edge/io-thread.ts). Requests' replies are the pool's own.
import {
  OP_ACKS, OP_C2D_COUNT, OP_FEEDBACK, OP_LOG, OP_PARTITION_ADVANCED, OP_PUBLISH, OP_REJECTED, OP_SESSION_OPENED, OP_SUBSCRIBED, OP_TELEMETRY_DONE,
} from './shard-protocol.js'

export interface ShardEvents {
  /** flat [connId, packetId, connId, packetId, ...], all committed */
  acks(flat: number[], from: number): void
  /** telemetry the shard finished with (stored, refused or dropped): flat [connId, count, bytes, ...] from `from` */
  telemetryDone(flat: number[], from: number): void
  sessionOpened(connId: number, sessionPresent: boolean, filters: string[], errorCode: number): void
  subscriptionStored(connId: number, packetId: number, errorCode: number): void
  /** the shard asks for a PUBLISH to one of its devices' connections */
  publish(connId: number, topic: string, payload: Uint8Array, qos: number, packetId: number, dup: boolean): void
  c2dCount(deviceId: string, count: number): void
  feedback(key: unknown[], stored: unknown): void
  /** one commit's events on a partition, with the stream frame when tailing was asked for */
  partitionAdvanced(partition: number, lastSequenceNumber: number, firstSequenceNumber: number, frame: Uint8Array | null): void
  rejected(connId: number, code: number, message: string, packetId: number): void
  log(level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown>): void
  fatal(shard: number, error: Error): void
}

/** One op from a shard to its handler (OP_REPLY excepted). */
export function dispatchShardOp(op: unknown[], events: ShardEvents): void {
  switch (op[0]) {
    case OP_ACKS: events.acks(op as number[], 1); break
    case OP_TELEMETRY_DONE: events.telemetryDone(op as number[], 1); break
    case OP_SESSION_OPENED: events.sessionOpened(op[1] as number, op[2] as boolean, (op[3] as string[] | undefined) ?? [], (op[4] as number | undefined) ?? 0); break
    case OP_SUBSCRIBED: events.subscriptionStored(op[1] as number, op[2] as number, op[3] as number); break
    case OP_PUBLISH: events.publish(op[1] as number, op[2] as string, op[3] as Uint8Array, op[4] as number, op[5] as number, op[6] as boolean); break
    case OP_C2D_COUNT: events.c2dCount(op[1] as string, op[2] as number); break
    case OP_FEEDBACK: events.feedback(op[1] as unknown[], op[2]); break
    case OP_PARTITION_ADVANCED: events.partitionAdvanced(op[1] as number, op[2] as number, op[3] as number, op[4] as Uint8Array | null); break
    case OP_REJECTED: events.rejected(op[1] as number, op[2] as number, op[3] as string, op[4] as number); break
    case OP_LOG: events.log(op[1] as 'info', op[2] as string, (op[3] as Record<string, unknown> | undefined) ?? {}); break
  }
}
