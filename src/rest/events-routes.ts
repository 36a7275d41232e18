// REST access to the built-in endpoint: partitions, reads, consumer groups, checkpoints.
import type { BuiltInEndpoint } from '../events/built-in-endpoint.js'
import { HubError } from './hub-error.js'
import type { Route } from './http-server.js'

const MAX_READ = 1000

export function eventsRoutes(endpoint: BuiltInEndpoint): Route[] {
  const all = () => Array.from({ length: endpoint.partitions }, (_, p) => endpoint.partitionInfo(p))
  return [
    { method: 'get', pattern: /^\/messages\/events\/partitions\/?$/, right: 'ServiceConnect', handle: () => { endpoint.refresh(); return { status: 200, body: all() } } },
    {
      method: 'get', pattern: /^\/messages\/events\/partitions\/([^/]+)\/?$/, right: 'ServiceConnect',
      handle(req) {
        endpoint.refresh()
        return { status: 200, body: endpoint.partitionInfo(endpoint.checkPartition(req.params[0]!)) }
      },
    },
    {
      method: 'get', pattern: /^\/messages\/events\/partitions\/([^/]+)\/events\/?$/, right: 'ServiceConnect',
      handle(req) {
        endpoint.refresh()
        const p = endpoint.checkPartition(req.params[0]!)
        const group = req.query.get('consumerGroup') ?? '$Default'
        endpoint.checkConsumerGroup(group)
        const maxCount = req.query.get('maxCount') === null ? 100 : Number(req.query.get('maxCount'))
        if (!Number.isInteger(maxCount) || maxCount < 1 || maxCount > MAX_READ) throw new HubError(400004, `maxCount must be 1..${MAX_READ}`)
        const start = endpoint.startPosition(p, group, {
          sequenceNumber: req.query.get('fromSequenceNumber'), enqueuedTime: req.query.get('fromEnqueuedTime'), position: req.query.get('from'),
        })
        const events = endpoint.read(p, start, maxCount)
        const next = events.length ? events[events.length - 1]!.sequenceNumber + 1 : start
        return { status: 200, body: { partitionId: String(p), consumerGroup: group, events, nextSequenceNumber: next } }
      },
    },
    { method: 'get', pattern: /^\/messages\/events\/consumergroups\/?$/i, right: 'ServiceConnect', handle: () => ({ status: 200, body: endpoint.consumerGroups().map((name) => ({ name })) }) },
    {
      method: 'put', pattern: /^\/messages\/events\/consumergroups\/([^/]+)\/?$/i, right: 'ServiceConnect',
      async handle(req) {
        await endpoint.createConsumerGroup(req.params[0]!)
        return { status: 200, body: { name: req.params[0] } }
      },
    },
    {
      method: 'delete', pattern: /^\/messages\/events\/consumergroups\/([^/]+)\/?$/i, right: 'ServiceConnect',
      async handle(req) {
        await endpoint.deleteConsumerGroup(req.params[0]!)
        return { status: 204 }
      },
    },
    {
      method: 'get', pattern: /^\/messages\/events\/consumergroups\/([^/]+)\/partitions\/([^/]+)\/checkpoint\/?$/i, right: 'ServiceConnect',
      handle(req) {
        endpoint.checkConsumerGroup(req.params[0]!)
        const cp = endpoint.checkpoint(req.params[0]!, endpoint.checkPartition(req.params[1]!))
        if (!cp) throw new HubError(404000, `no checkpoint for ${req.params[0]} on partition ${req.params[1]}`)
        return { status: 200, body: cp }
      },
    },
    {
      method: 'put', pattern: /^\/messages\/events\/consumergroups\/([^/]+)\/partitions\/([^/]+)\/checkpoint\/?$/i, right: 'ServiceConnect',
      async handle(req) {
        endpoint.refresh()
        endpoint.checkConsumerGroup(req.params[0]!)
        const p = endpoint.checkPartition(req.params[1]!)
        const body = req.json<{ sequenceNumber?: unknown }>()
        return { status: 200, body: await endpoint.setCheckpoint(req.params[0]!, p, Number(body?.sequenceNumber)) }
      },
    },
  ]
}
