// `hyperhub device create|list|show|delete|connection-string`: the identity registry.
import { Command, Option } from 'commander'
import { action } from '../hyperhub.js'
import { CliError, fields, intOption, json, segment, table } from '../output.js'

interface DeviceIdentity {
  deviceId: string
  etag: string
  status: string
  connectionState: string
  lastActivityTime: string
  cloudToDeviceMessageCount: number
  authentication: { type: string; symmetricKey?: { primaryKey: string | null; secondaryKey: string | null }; x509Thumbprint?: { primaryThumbprint: string | null; secondaryThumbprint: string | null } }
  capabilities?: { iotEdge: boolean }
}

const devicePath = (id: string) => `/devices/${segment(id)}`
// Azure's "never" (0001-01-01) reads as no activity
const when = (t: string | undefined) => (!t || t.startsWith('0001-') ? '' : t)

function summary(d: DeviceIdentity): [string, unknown][] {
  return [
    ['device id', d.deviceId], ['status', d.status], ['connection', d.connectionState], ['last activity', when(d.lastActivityTime)],
    ['authentication', d.authentication.type], ['iot edge', d.capabilities?.iotEdge ?? false], ['pending c2d', d.cloudToDeviceMessageCount], ['etag', d.etag],
  ]
}

export function deviceCommands(): Command {
  const device = new Command('device').description('create, list, show and delete device identities')

  device.command('create').argument('<device-id>')
    .description('create a device (keys generated unless given)')
    .addOption(new Option('--auth <type>', 'sas, selfSigned (thumbprints) or certificateAuthority').choices(['sas', 'selfSigned', 'certificateAuthority']).default('sas'))
    .option('--primary-key <base64>').option('--secondary-key <base64>')
    .option('--primary-thumbprint <hex>').option('--secondary-thumbprint <hex>')
    .option('--edge', 'an IoT Edge device')
    .addOption(new Option('--status <status>').choices(['enabled', 'disabled']).default('enabled'))
    .action(action(async (ctx, id: string, o: Record<string, string | boolean | undefined>) => {
      if (o.auth === 'selfSigned' && !o.primaryThumbprint) throw new CliError('--auth selfSigned needs --primary-thumbprint')
      const authentication = o.auth === 'sas'
        ? { type: 'sas', symmetricKey: { primaryKey: o.primaryKey ?? null, secondaryKey: o.secondaryKey ?? null } }
        : { type: o.auth, x509Thumbprint: { primaryThumbprint: o.primaryThumbprint ?? null, secondaryThumbprint: o.secondaryThumbprint ?? o.primaryThumbprint ?? null } }
      const { body } = await ctx.client().call<DeviceIdentity>('PUT', devicePath(id), {
        // without If-Match a PUT only creates: an existing device is an error (409), not replaced
        body: { deviceId: id, status: o.status, authentication, capabilities: { iotEdge: Boolean(o.edge) } },
      })
      ctx.print(ctx.options.json ? json(body) : fields(summary(body)))
    }))

  device.command('list')
    .description('list devices (id, status, connection, last activity)')
    .option('--top <n>', 'at most this many (1..1000)', '1000')
    .action(action(async (ctx, o: { top: string }) => {
      const top = intOption('--top', o.top, 1, 1000)
      const { body } = await ctx.client().call<DeviceIdentity[]>('GET', `/devices/?top=${top}`)
      if (ctx.options.json) return ctx.print(json(body))
      ctx.print(body.length === 0 ? 'no devices' : table(body, [
        { header: 'device id', value: (d) => d.deviceId }, { header: 'status', value: (d) => d.status },
        { header: 'connection', value: (d) => d.connectionState }, { header: 'last activity', value: (d) => when(d.lastActivityTime) },
        { header: 'auth', value: (d) => d.authentication.type }, { header: 'c2d', value: (d) => d.cloudToDeviceMessageCount },
      ]))
    }))

  device.command('show').argument('<device-id>')
    .description('one device\'s identity (keys only with --json)')
    .action(action(async (ctx, id: string) => {
      const { body } = await ctx.client().call<DeviceIdentity>('GET', devicePath(id))
      ctx.print(ctx.options.json ? json(body) : fields(summary(body)))
    }))

  device.command('delete').argument('<device-id>')
    .description('delete a device (and its modules, twin and queue)')
    .option('--etag <etag>', 'only if the identity still has this etag')
    .action(action(async (ctx, id: string, o: { etag?: string }) => {
      await ctx.client().call('DELETE', devicePath(id), { headers: { 'if-match': o.etag ? `"${o.etag.replace(/^"|"$/g, '')}"` : '*' } })
      ctx.print(ctx.options.json ? json({ deleted: id }) : `deleted ${id}`)
    }))

  device.command('connection-string').argument('<device-id>')
    .description('the device\'s connection string, for the device SDKs')
    .addOption(new Option('--key <which>', 'which key').choices(['primary', 'secondary']).default('primary'))
    .action(action(async (ctx, id: string, o: { key: 'primary' | 'secondary' }) => {
      const client = ctx.client()
      const { body } = await client.call<DeviceIdentity>('GET', devicePath(id))
      const key = body.authentication.symmetricKey?.[`${o.key}Key`]
      const target = client.target
      // the SDKs dial MQTT on 8883; a hub on another port needs it in the host name (as its banner prints)
      const host = target.mqttPort === 8883 ? target.hostName : `${target.hostName}:${target.mqttPort}`
      const cs = key ? `HostName=${host};DeviceId=${id};SharedAccessKey=${key}` : `HostName=${host};DeviceId=${id};x509=true`
      ctx.print(ctx.options.json ? json({ connectionString: cs }) : cs)
    }))
  return device
}
