// `hyperhub c2d send`: a cloud-to-device message into a device's queue (delivered when it is connected).
import { Command, Option } from 'commander'
import { action } from '../hyperhub.js'
import { CliError, intOption, json } from '../output.js'

/** `a=1;b=2` (as `az iot device c2d-message send --props` takes them) into pairs. */
export function parseProperties(text: string | undefined): [string, string][] {
  if (!text) return []
  return text.split(';').filter(Boolean).map((pair) => {
    const at = pair.indexOf('=')
    if (at <= 0) throw new CliError(`--props must be key=value pairs separated by ";", not ${JSON.stringify(pair)}`)
    return [pair.slice(0, at), pair.slice(at + 1)]
  })
}

export function c2dCommands(): Command {
  const c2d = new Command('c2d').description('cloud-to-device messages')
  c2d.command('send').argument('<device-id>')
    .description('queue a message for a device')
    .option('--data <text>', 'the message body', '')
    .option('--props <pairs>', 'application properties, e.g. "priority=high;kind=cmd"')
    .addOption(new Option('--ack <kind>', 'feedback to ask for').choices(['none', 'positive', 'negative', 'full']).default('none'))
    .option('--message-id <id>').option('--correlation-id <id>')
    .option('--content-type <type>').option('--content-encoding <encoding>')
    .option('--expiry <seconds>', 'expire after this many seconds (1..172800)')
    .action(action(async (ctx, id: string, o: Record<string, string | undefined>) => {
      const headers: Record<string, string> = { 'content-type': 'application/octet-stream', 'iothub-ack': o.ack! }
      for (const [k, v] of parseProperties(o.props)) headers[`iothub-app-${k}`] = v
      if (o.messageId) headers['iothub-messageid'] = o.messageId
      if (o.correlationId) headers['iothub-correlationid'] = o.correlationId
      if (o.contentType) headers['iothub-contenttype'] = o.contentType
      if (o.contentEncoding) headers['iothub-contentencoding'] = o.contentEncoding
      if (o.expiry !== undefined) headers['iothub-expiry'] = new Date(Date.now() + intOption('--expiry', o.expiry, 1, 172_800) * 1000).toISOString()
      const { body } = await ctx.client().call('POST', `/devices/${encodeURIComponent(id)}/messages/devicebound`, { raw: Buffer.from(o.data ?? '', 'utf8'), headers })
      ctx.print(ctx.options.json ? json(body) : `queued a message for ${id}`)
    }))
  return c2d
}
