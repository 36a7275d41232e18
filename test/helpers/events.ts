// Reading the built-in endpoint back through its REST API.
import type { TestHub } from './test-hub.js'
import type { EventJson } from '../../src/events/built-in-endpoint.js'

/** An event as the REST API returns it. */
export type ReadEvent = EventJson

/** Every event in every partition, oldest first per partition. */
export async function readAllEvents(t: TestHub): Promise<ReadEvent[]> {
  const out: ReadEvent[] = []
  const parts = (await t.rest('GET', '/messages/events/partitions')).body as { partitionId: string }[]
  for (const { partitionId } of parts) {
    let from = 0
    for (;;) {
      const r = await t.rest('GET', `/messages/events/partitions/${partitionId}/events?fromSequenceNumber=${from}&maxCount=1000`)
      if (r.status !== 200) throw new Error(`read failed: ${r.status} ${r.text}`)
      out.push(...r.body.events)
      // a page stops at 1,000 events or 4 MB: the partition ends at the first empty page
      if (r.body.events.length === 0) break
      from = r.body.nextSequenceNumber
    }
  }
  return out
}

export function eventsOf(events: ReadEvent[], deviceId: string): ReadEvent[] {
  return events.filter((e) => e.systemProperties['iothub-connection-device-id'] === deviceId)
}

/** Polls until `count` events of the device are readable (commits are asynchronous to the publisher only for QoS 0). */
export async function waitForEvents(t: TestHub, deviceId: string, count: number, timeoutMs = 10_000): Promise<ReadEvent[]> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const mine = eventsOf(await readAllEvents(t), deviceId)
    if (mine.length >= count || Date.now() > deadline) return mine
    await new Promise((r) => setTimeout(r, 50))
  }
}
