// A shard's stores promise only what is committed (issue 10, found by the review): a session resumed
// from memory is "present" only once its write committed, a clean session cannot be brought back by
// an earlier write landing after its removal, and a twin's readers see only committed versions.
import { getEventListeners } from 'node:events'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, describe, expect, it } from 'vitest'
import { SessionStore } from '../shards/session-store.js'
import { TwinStore } from '../shards/twin-store.js'
import { postRecords, webhookDispatcher } from '../shards/webhook-request.js'
import { tempStore } from './helpers/temp-store.js'

const temp = tempStore()
const { store, committed } = temp
afterAll(() => temp.close())

describe('sessions', () => {
  it('a session resumed from memory is present only once its first write committed', async () => {
    const sessions = new SessionStore(store.sessions)
    const first = sessions.open('race-a', false, 'gen')
    const second = sessions.open('race-a', false, 'gen') // a takeover before the first commit
    expect(second.present).toBe(true)
    let storedWhenAnswered: unknown = 'not yet'
    await second.written.then(() => { storedWhenAnswered = committed(() => store.sessions.get('race-a')) })
    expect(storedWhenAnswered).toMatchObject({ clean: false })
    await first.written
  })

  it('a clean session removes what an earlier connection was still writing', async () => {
    const sessions = new SessionStore(store.sessions)
    const persistent = sessions.open('race-b', false, 'gen')
    const clean = sessions.open('race-b', true, 'gen')
    await Promise.all([persistent.written, clean.written])
    expect(committed(() => store.sessions.get('race-b'))).toBeUndefined()
    expect(sessions.open('race-b', false, 'gen').present).toBe(false)
  })
})

describe('twins', () => {
  it('readers get the committed twin while a change is committing, and the change once it committed', async () => {
    const twins = new TwinStore(store.twins)
    await twins.ensure('dirty-read', 'gen')
    const before = twins.read('dirty-read').version
    const { doc, written } = twins.updateFromService('dirty-read', 'patch', { tags: { a: 1 } }, undefined)
    expect(twins.read('dirty-read').version).toBe(before)
    // the next change builds on the pending one, though
    expect(twins.get('dirty-read').version).toBe(doc.version)
    await written
    expect(twins.read('dirty-read')).toBe(doc)
  })
})

describe('webhook requests', () => {
  it('leave nothing attached to the deliverer\'s long-lived stop signal', async () => {
    const server = http.createServer((_req, res) => res.end('ok'))
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const def = { name: 'w', url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, maxDeliveryAttempts: 1, timeoutInSeconds: 5 }
    const policy = { allowPrivate: true, hubPorts: [] }
    const dispatcher = webhookDispatcher(def, () => policy)
    const stop = new AbortController()
    for (let i = 0; i < 20; i++) expect(await postRecords(def, '[]', stop.signal, dispatcher, policy)).toEqual({ isDelivered: true })
    expect(getEventListeners(stop.signal, 'abort')).toHaveLength(0)
    // AbortSignal.any would hold each request's signal in a set of the stop signal's own (Node's
    // internals, looked at through its symbol properties): none may be left
    const held = Object.getOwnPropertySymbols(stop.signal).map((k) => (stop.signal as unknown as Record<symbol, { size?: number }>)[k]?.size ?? 0)
    expect(held.reduce((a, b) => a + b, 0)).toBe(0)
    await dispatcher.destroy()
    server.close()
  })
})
