// `npm run token` reads keys from the data directory and prints tokens the hub accepts.
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MqttTestClient } from './helpers/mqtt-test-client.js'
import { startTestHub, type TestHub } from './helpers/test-hub.js'

const run = promisify(execFile)
let t: TestHub
beforeAll(async () => { t = await startTestHub() })
afterAll(async () => { await t.stop() })

const token = (...args: string[]) => run(process.execPath, ['--import', 'tsx', 'src/cli/token.ts', '--data-dir', t.dataDir, ...args])

describe('npm run token', () => {
  it('prints service tokens with the rights of their policy', async () => {
    const owner = (await token()).stdout.trim()
    expect(owner).toMatch(/^SharedAccessSignature sr=localhost&sig=.+&skn=iothubowner&se=\d+$/)
    expect((await t.rest('GET', '/devices/', { token: owner })).status).toBe(200)
    const service = (await token('--policy', 'service')).stdout.trim()
    expect((await t.rest('GET', '/devices/', { token: service })).status).toBe(401)
    expect((await t.rest('GET', '/messages/events/partitions', { token: service })).status).toBe(200)
  })

  it('prints a device token the MQTT listener accepts', async () => {
    await t.createDevice('cli-dev')
    const password = (await token('--device', 'cli-dev')).stdout.trim()
    const { client, connack } = await MqttTestClient.connect({ port: t.hub.ports.mqttTcp!, clientId: 'cli-dev', password })
    expect(connack.returnCode).toBe(0)
    await client.disconnect()
  })

  it('answers a mistyped option, a bad --ttl and a data directory without a hub with one line and exit code 2', async () => {
    await expect(token('--polcy', 'service')).rejects.toMatchObject({ code: 2, stderr: "token: Unknown option '--polcy'; options: --policy, --device, --ttl, --role, --subject, --data-dir, --host-name\n" })
    for (const ttl of ['abc', '0', '-5', '1.5', '99999999999']) {
      await expect(token(`--ttl=${ttl}`)).rejects.toMatchObject({ code: 2, stderr: `token: --ttl must be a whole number of seconds from 1 to 31536000, not ${JSON.stringify(ttl)}\n` })
    }
    const missing = `${t.dataDir}-nothing-here`
    await expect(run(process.execPath, ['--import', 'tsx', 'src/cli/token.ts', '--data-dir', missing])).rejects.toMatchObject({ code: 2, stderr: expect.stringMatching(/^token: no hub data in .*-nothing-here \(has the hub been started there\?/) })
    // and it did not make one there
    expect(existsSync(missing)).toBe(false)
    expect((await token('--ttl', '60')).stdout).toMatch(/&se=\d+\n$/)
  })

  it('prints a bearer token for a role that the hub accepts for what the role allows', async () => {
    const reader = (await token('--role', 'IoT Hub Registry Contributor', '--subject', 'cli-user')).stdout.trim()
    expect((await t.rest('GET', '/devices/', { token: `Bearer ${reader}` })).status).toBe(200)
    const refused = await t.rest('GET', '/twins/cli-dev', { token: `Bearer ${reader}` })
    expect([refused.status, refused.body.Message]).toEqual([401, 'ErrorCode:IotHubUnauthorized;Principal cli-user is not authorized for GET on /twins/cli-dev due to no assigned permissions'])
    await expect(token('--role', 'Data Wizard')).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining("unknown role 'Data Wizard'") })
  })

  it('fails clearly for unknown policies and devices', async () => {
    await expect(token('--policy', 'nope')).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining('no policy nope') })
    await expect(token('--device', 'nobody')).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining('no SAS device nobody') })
  })
})
