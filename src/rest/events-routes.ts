// REST access to the built-in endpoint: partitions, reads, consumer groups, checkpoints. The same
// API serves routing log endpoints under /messages/endpoints/{name}/...
import type { BuiltInEndpoint } from '../events/built-in-endpoint.js'
import { HubError } from './hub-error.js'
import type { RestRequest, Route } from './http-server.js'

const MAX_READ = 1000
/** A read answers at most this much of bodies and properties (at least one event): 1,000 large events would be hundreds of MB. */
export const MAX_READ_BYTES = 4 * 1024 * 1024

export function eventsRoutes(builtIn: BuiltInEndpoint): Route[] {
  return logReadRoutes('/messages/events', (req) => ({ endpoint: builtIn, params: req.params }))
}

/** The read API of routing log endpoints; `lookup` answers 404 for a name that is not a log endpoint. */
export function endpointLogRoutes(lookup: (name: string) => BuiltInEndpoint): Route[] {
  return logReadRoutes('/messages/endpoints/([^/]+)', (req) => ({ endpoint: lookup(req.params[0]!), params: req.params.slice(1) }))
}

function logReadRoutes(base: string, pick: (req: RestRequest) => { endpoint: BuiltInEndpoint; params: string[] }): Route[] {
  const at = (rest: string, flags = '') => new RegExp(`^${base}${rest}$`, flags)
  const bind = (handle: (req: RestRequest & { endpoint: BuiltInEndpoint }) => ReturnType<Route['handle']>) => (req: RestRequest) => {
    const { endpoint, params } = pick(req)
    return handle({ ...req, params, endpoint })
  }
  return [
    {
      method: 'get', pattern: at('/partitions/?'), right: 'ServiceConnect', role: 'sas-only',
      handle: bind(({ endpoint }) => {
        endpoint.refresh()
        return { status: 200, body: Array.from({ length: endpoint.partitions }, (_, p) => endpoint.partitionInfo(p)) }
      }),
    },
    {
      method: 'get', pattern: at('/partitions/([^/]+)/?'), right: 'ServiceConnect', role: 'sas-only',
      handle: bind((req) => {
        const endpoint = req.endpoint
        endpoint.refresh()
        return { status: 200, body: endpoint.partitionInfo(endpoint.checkPartition(req.params[0]!)) }
      }),
    },
    {
      method: 'get', pattern: at('/partitions/([^/]+)/events/?'), right: 'ServiceConnect', role: 'sas-only',
      handle: bind((req) => {
        const endpoint = req.endpoint
        endpoint.refresh()
        const p = endpoint.checkPartition(req.params[0]!)
        const group = req.query.get('consumerGroup') ?? '$Default'
        endpoint.checkConsumerGroup(group)
        const maxCount = req.query.get('maxCount') === null ? 100 : Number(req.query.get('maxCount'))
        if (!Number.isInteger(maxCount) || maxCount < 1 || maxCount > MAX_READ) throw new HubError(400004, `maxCount must be 1..${MAX_READ}`)
        const start = endpoint.startPosition(p, group, {
          sequenceNumber: req.query.get('fromSequenceNumber'), enqueuedTime: req.query.get('fromEnqueuedTime'), position: req.query.get('from'),
        })
        const events = endpoint.read(p, start, maxCount, MAX_READ_BYTES)
        const next = events.length ? events[events.length - 1]!.sequenceNumber + 1 : start
        return { status: 200, body: { partitionId: String(p), consumerGroup: group, events, nextSequenceNumber: next } }
      }),
    },
    {
      method: 'get', pattern: at('/consumergroups/?', 'i'), right: 'ServiceConnect', role: 'sas-only',
      handle: bind(({ endpoint }) => ({ status: 200, body: endpoint.consumerGroups().map((name) => ({ name })) })),
    },
    {
      // creating and deleting consumer groups is hub configuration (ARM in Azure)
      method: 'put', pattern: at('/consumergroups/([^/]+)/?', 'i'), right: 'ControlPlane',
      handle: bind(async (req) => {
        const endpoint = req.endpoint
        await endpoint.createConsumerGroup(req.params[0]!)
        return { status: 200, body: { name: req.params[0] } }
      }),
    },
    {
      method: 'delete', pattern: at('/consumergroups/([^/]+)/?', 'i'), right: 'ControlPlane',
      handle: bind(async (req) => {
        const endpoint = req.endpoint
        await endpoint.deleteConsumerGroup(req.params[0]!)
        return { status: 204 }
      }),
    },
    {
      method: 'get', pattern: at('/consumergroups/([^/]+)/partitions/([^/]+)/checkpoint/?', 'i'), right: 'ServiceConnect', role: 'sas-only',
      handle: bind((req) => {
        const endpoint = req.endpoint
        endpoint.checkConsumerGroup(req.params[0]!)
        const cp = endpoint.checkpoint(req.params[0]!, endpoint.checkPartition(req.params[1]!))
        if (!cp) throw new HubError(404000, `no checkpoint for ${req.params[0]} on partition ${req.params[1]}`)
        return { status: 200, body: cp }
      }),
    },
    {
      method: 'put', pattern: at('/consumergroups/([^/]+)/partitions/([^/]+)/checkpoint/?', 'i'), right: 'ServiceConnect', role: 'sas-only',
      handle: bind(async (req) => {
        const endpoint = req.endpoint
        endpoint.refresh()
        endpoint.checkConsumerGroup(req.params[0]!)
        const p = endpoint.checkPartition(req.params[1]!)
        const body = req.json<{ sequenceNumber?: unknown }>()
        return { status: 200, body: await endpoint.setCheckpoint(req.params[0]!, p, Number(body?.sequenceNumber)) }
      }),
    },
  ]
}
