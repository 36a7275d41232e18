// What the shard needs of a partition of the built-in endpoint to write it, whichever store holds
// it: LMDB on one node (shards/partition-log.ts) or a replicated JetStream stream in cluster mode
// (jetstream-partition-log.ts). Appends assign sequence numbers and byte offsets at once, in order;
// the promise resolves once the events are durable (committed, or acknowledged by the stream's
// majority) and only then may their acknowledgements go out.
import type { RawEvent } from '../events/segment-codec.js'

export interface PartitionAppender {
  readonly id: number
  readonly lastSequenceNumber: number
  readonly next: { sequence: number; offset: number }
  append(events: RawEvent[]): Promise<boolean>
}
