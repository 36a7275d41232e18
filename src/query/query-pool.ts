// The query workers: a piscina pool of one thread (the shards already use the other cores), started
// on the first query and ended after a minute without one. Each task gets a snapshot of the edge's
// presence facts for the devices that have any.
import { Piscina } from 'piscina'
import type { Durability } from '../store/hub-store.js'
import type { PresenceView } from '../registry/device-registry.js'
import type { QueryOutcome, QueryTask } from './query-worker.js'
import { takeSnapshot } from './presence-snapshot.js'

export class QueryPool {
  private readonly pool: Piscina<QueryTask, QueryOutcome>

  constructor(private readonly dataDir: string, private readonly durability: Durability,
    private readonly presence: PresenceView & { presentDeviceIds(): Iterable<string> }) {
    this.pool = new Piscina({
      filename: new URL('./query-worker-bootstrap.mjs', import.meta.url).href,
      minThreads: 0, maxThreads: 1, idleTimeout: 60_000, maxQueue: 100,
    })
  }

  run(query: string, pageSize: number, continuation: string | undefined): Promise<QueryOutcome> {
    return this.pool.run({
      dataDir: this.dataDir, durability: this.durability, query, pageSize, continuation,
      presence: takeSnapshot(this.presence.presentDeviceIds(), this.presence),
    })
  }

  close(): Promise<void> {
    return this.pool.destroy()
  }
}
