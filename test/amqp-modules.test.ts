// Issue 16: modules over AMQP as a hostile client tries them. A module's put-token opens only its
// own links; a token put before the module was deleted (or its device disabled) opens no new link on
// the same connection; a module's link has no C2D; an id the Node SDK writes unencoded (`%` in it)
// works as written.
import rhea from 'rhea'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createSasToken } from '../src/auth/sas-token.js'
import { amqpConnect, next, putToken } from './helpers/amqp-client.js'
import { startTestHub, type TestHub } from './helpers/test-hub.js'

let t: TestHub
beforeAll(async () => { t = await startTestHub() })
afterAll(async () => { await t?.stop() })

async function addModule(deviceId: string, moduleId: string): Promise<string> {
  if (!t.hub.registry.get(deviceId)) await t.createDevice(deviceId)
  const r = await t.rest('PUT', `/devices/${deviceId}/modules/${encodeURIComponent(moduleId)}?api-version=2021-04-12`, { body: {} })
  if (r.status !== 200) throw new Error(`module not created: ${r.status} ${r.text}`)
  return r.body.authentication.symmetricKey.primaryKey as string
}

const audience = (d: string, m: string) => `localhost/devices/${d}/modules/${m}`
const token = (d: string, m: string, key: string) => createSasToken(encodeURIComponent(audience(d, m)), key)

/** Opens a sender on the address: 'open', or the condition it was refused with. */
async function attach(conn: rhea.Connection, address: string): Promise<string> {
  const link = conn.open_sender({ target: { address } })
  const ctx = await Promise.race([next(link, 'sendable').then(() => 'open'), next(link, 'sender_close').then((c) => (c.sender as unknown as { remote: { detach: { error: rhea.AmqpError } } }).remote.detach.error.condition ?? 'closed')])
  return ctx
}

describe('modules over AMQP', () => {
  it('a token put before the module was deleted, or its device disabled, opens no new link', async () => {
    const key = await addModule('am-stale', 'm')
    const key2 = await addModule('am-stale', 'n')
    const conn = await amqpConnect(t.hub.ports.amqp!, t.ca)
    expect(await putToken(conn, token('am-stale', 'm', key), audience('am-stale', 'm'))).toBe(200)
    expect(await putToken(conn, token('am-stale', 'n', key2), audience('am-stale', 'n'))).toBe(200)
    expect(await attach(conn, '/devices/am-stale/modules/m/messages/events')).toBe('open')
    expect((await t.rest('DELETE', '/devices/am-stale/modules/m?api-version=2021-04-12', { headers: { 'If-Match': '*' } })).status).toBe(204)
    expect(await attach(conn, '/devices/am-stale/modules/m/messages/events')).toBe('amqp:not-found')
    // the sibling still works; disabling the device ends that too
    expect(await attach(conn, '/devices/am-stale/modules/n/twin')).toBe('open')
    const d = t.hub.registry.get('am-stale')!
    expect((await t.rest('PUT', '/devices/am-stale?api-version=2021-04-12', { body: { deviceId: 'am-stale', status: 'disabled', authentication: d.authentication }, headers: { 'If-Match': '*' } })).status).toBe(200)
    expect(await attach(conn, '/devices/am-stale/modules/n/messages/events')).toBe('amqp:unauthorized-access')
    conn.close()
  })

  it('a module has no C2D link, and its id is taken as written when it holds %', async () => {
    const key = await addModule('am-ids', 'm%41')
    const conn = await amqpConnect(t.hub.ports.amqp!, t.ca)
    expect(await putToken(conn, token('am-ids', 'm%41', key), audience('am-ids', 'm%41'))).toBe(200)
    expect(await attach(conn, '/devices/am-ids/modules/m%41/messages/events')).toBe('open')
    const c2d = conn.open_receiver({ source: { address: '/devices/am-ids/modules/m%41/messages/devicebound' } })
    const closed = await next(c2d, 'receiver_close')
    expect((closed.receiver as unknown as { remote: { detach: { error: rhea.AmqpError } } }).remote.detach.error.condition).toBe('amqp:not-found')
    conn.close()
  })
})
