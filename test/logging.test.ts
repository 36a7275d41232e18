// Logs are JSON lines and never carry a key, a signature or a token, whatever the client sends.
import { logged } from './helpers/log-wait.js'
import { describe, expect, it } from 'vitest'
import { createLogger } from '../src/log.js'
import { MqttTestClient } from './helpers/mqtt-test-client.js'
import { startTestHub } from './helpers/test-hub.js'

describe('structured logs', () => {
  it('writes one JSON object a line, filtered by level, with secret-named fields redacted', () => {
    const lines: string[] = []
    const log = createLogger('info', { component: 'test' }, (l) => lines.push(l))
    log.debug('hidden')
    log.info('shown', { deviceId: 'd1', sharedAccessKey: 'abc', password: 'p', sig: 's', signal: 'SIGTERM' })
    expect(lines).toHaveLength(1)
    expect(lines[0]!.endsWith('\n')).toBe(true)
    const rec = JSON.parse(lines[0]!)
    expect(rec).toMatchObject({ level: 'info', msg: 'shown', component: 'test', deviceId: 'd1', sharedAccessKey: '[redacted]', password: '[redacted]', sig: '[redacted]', signal: 'SIGTERM' })
  })

  it('a hub at debug level logs no keys or tokens through good and bad connects and requests', async () => {
    const records: Record<string, unknown>[] = []
    const t = await startTestHub({}, { logRecords: records })
    try {
      const { primaryKey } = await t.createDevice('log-dev')
      const good = t.deviceToken('log-dev', primaryKey)
      const forged = t.deviceToken('log-dev', Buffer.alloc(32, 9).toString('base64'))
      const ok = await MqttTestClient.connect({ port: t.hub.ports.mqttTcp!, clientId: 'log-dev', password: good })
      await ok.client.publish('devices/log-dev/messages/events/', 'x', 1)
      await ok.client.disconnect()
      const bad = await MqttTestClient.connect({ port: t.hub.ports.mqttTcp!, clientId: 'log-dev', password: forged })
      await bad.client.closed
      await t.rest('GET', '/devices/', { token: forged })
      await t.rest('GET', '/devices/', { token: 'SharedAccessSignature sr=localhost&sig=bm9wZQ%3D%3D&se=1&skn=iothubowner' })
      const text = JSON.stringify(records)
      expect(await logged(records, (r) => r.msg === 'connection closed' && r.failure === 'unauthorized')).toBe(true)
      const secrets = [primaryKey, ...t.hub.policies.flatMap((p) => [p.primaryKey, p.secondaryKey]), good, forged,
        decodeURIComponent(/sig=([^&]+)/.exec(good)![1]!), decodeURIComponent(/sig=([^&]+)/.exec(forged)![1]!), 'bm9wZQ==']
      for (const s of secrets) expect(text).not.toContain(s)
    } finally {
      await t.stop()
    }
  })
})
