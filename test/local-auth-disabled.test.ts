// --disable-local-auth (Azure's disableLocalAuth) on AMQP: a policy token opens the built-in
// Event Hubs endpoint and nothing else, even on a hub whose name makes the entity `devices` (the
// first segment of every device link's address).
import rhea from 'rhea'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createSasToken } from '../src/auth/sas-token.js'
import { amqpConnect, next, putToken } from './helpers/amqp-client.js'
import { startTestHub, type TestHub } from './helpers/test-hub.js'

let t: TestHub
beforeAll(async () => {
  t = await startTestHub({ hostName: 'devices', tlsNames: ['localhost'], disableLocalAuth: true })
})
afterAll(async () => { await t.stop() })

/** Whether a link attaches and stays, or the condition it was refused with. */
async function attach(conn: rhea.Connection, link: rhea.Sender | rhea.Receiver, role: 'sender' | 'receiver'): Promise<string> {
  let refused: string | undefined
  link.once(`${role}_close`, () => { refused = (link as unknown as { remote: { detach?: { error?: rhea.AmqpError } } }).remote.detach?.error?.condition ?? 'closed' })
  await Promise.race([next(link, `${role}_open`), next(link, `${role}_close`)])
  // a marker: a link to nothing, refused after the first one's answer (the hub answers attaches in order)
  await next(conn.open_receiver({ source: { address: 'no-such-entity' } }), 'receiver_close')
  return refused ?? 'attached'
}

describe('local authentication disabled, on AMQP', () => {
  it('a DeviceConnect policy token for the Event Hubs entity `devices` opens the endpoint\'s partitions, not device links', async () => {
    expect(t.hub.eventHubName).toBe('devices')
    const conn = await amqpConnect(t.hub.ports.amqp!, t.ca)
    // the hub itself: refused
    expect(await putToken(conn, createSasToken('devices', t.policyKey('iothubowner'), 'iothubowner'), 'devices')).toBe(401)
    expect(await putToken(conn, createSasToken('sb://devices/devices', t.policyKey('iothubowner'), 'iothubowner'), 'sb://devices/devices')).toBe(200)
    expect(await attach(conn, conn.open_sender({ target: { address: '/devices/victim/messages/events' } }), 'sender')).toBe('amqp:unauthorized-access')
    expect(await attach(conn, conn.open_sender({ target: { address: '/messages/devicebound' } }), 'sender')).toBe('amqp:unauthorized-access')
    expect(await attach(conn, conn.open_receiver({ source: { address: 'devices/ConsumerGroups/$Default/Partitions/0' } }), 'receiver')).toBe('attached')
    conn.close()
  })
})
