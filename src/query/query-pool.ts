// The query workers: a piscina pool of one thread (the shards already use the other cores), started
// on the first query and ended after a minute without one. Each task gets a snapshot of the edge's
// presence facts for the devices that have any. Past MAX_QUEUED waiting queries the hub answers
// 429 ThrottlingException, as Azure throttles queries, instead of queueing without bound.
import { Piscina } from 'piscina'
import type { Durability } from '../store/hub-store.js'
import { HubError } from '../rest/hub-error.js'
import type { QueryOutcome, QueryPageOutcome, QueryTask } from './query-worker.js'
import type { ConfigurationPlan, ConfigurationPlanRequest } from './configuration-plan.js'
import type { JobTargets, JobTargetsRequest } from './job-targets.js'
import { PresenceSnapshots, type PresenceSource } from './presence-snapshot.js'

export const MAX_QUEUED_QUERIES = 100

export class QueryPool {
  private readonly pool: Piscina<QueryTask, QueryOutcome>
  private readonly snapshots: PresenceSnapshots
  private waiting = 0

  constructor(private readonly dataDir: string, private readonly durability: Durability, presence: PresenceSource) {
    this.snapshots = new PresenceSnapshots(presence)
    this.pool = new Piscina({
      filename: new URL('./query-worker-bootstrap.mjs', import.meta.url).href,
      minThreads: 0, maxThreads: 1, idleTimeout: 60_000, maxQueue: MAX_QUEUED_QUERIES,
    })
  }

  async run(query: string, pageSize: number, continuation: string | undefined): Promise<QueryPageOutcome> {
    const r = await this.task({ query, pageSize, continuation })
    if (r.ok && !('page' in r)) throw new Error('the worker answered a query with something else')
    return r
  }

  /** One page of the automatic configurations' scan (configuration-plan.ts), queued with the queries. */
  async plan(request: ConfigurationPlanRequest): Promise<ConfigurationPlan> {
    const r = await this.task({ query: '', pageSize: 1, plan: request })
    if (!r.ok || !('plan' in r)) throw new Error(r.ok ? 'the worker answered a plan with a page' : r.message)
    return r.plan
  }

  /** One page of a scheduled job's targets (job-targets.ts), queued with the queries. */
  async targets(request: JobTargetsRequest): Promise<JobTargets> {
    const r = await this.task({ query: '', pageSize: 1, targets: request })
    if (!r.ok || !('targets' in r)) throw new Error(r.ok ? 'the worker answered a target scan with something else' : r.message)
    return r.targets
  }

  private async task(t: Pick<QueryTask, 'query' | 'pageSize' | 'continuation' | 'plan' | 'targets'>): Promise<QueryOutcome> {
    // counted from arrival, so queries waiting for their snapshot count as well
    if (this.waiting >= MAX_QUEUED_QUERIES) throw new HubError(429001, `more than ${MAX_QUEUED_QUERIES} queries are waiting; retry later`)
    this.waiting++
    try {
      const presence = await this.snapshots.take()
      return await this.pool.run({ dataDir: this.dataDir, durability: this.durability, ...t, presence })
    } finally {
      this.waiting--
    }
  }

  close(): Promise<void> {
    return this.pool.destroy()
  }
}
