// `hyperhub c2d send`: a cloud-to-device message into a device's queue (delivered when it is connected).
import { Command, Option } from 'commander'
import { action } from '../hyperhub.js'
import { CliError, intOption, json, segment } from '../output.js'

const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/
const HEADER_TEXT = /^[\x20-\x7e]*$/

/** A header option's value, or a one-line error naming the option. */
function headerText(option: string, value: string): string {
  if (!HEADER_TEXT.test(value)) throw new CliError(`${option} must be printable ASCII, not ${JSON.stringify(value)}`)
  return value
}

/** `a=1;b=2` (as `az iot device c2d-message send --props` takes them) into pairs. */
export function parseProperties(text: string | undefined): [string, string][] {
  if (!text) return []
  return text.split(';').filter(Boolean).map((pair) => {
    const at = pair.indexOf('=')
    if (at <= 0) throw new CliError(`--props must be key=value pairs separated by ";", not ${JSON.stringify(pair)}`)
    const [key, value] = [pair.slice(0, at), pair.slice(at + 1)]
    // they travel as HTTP headers (iothub-app-<key>): a token for the name, printable ASCII for the value
    if (!HEADER_NAME.test(key)) throw new CliError(`--props: ${JSON.stringify(key)} cannot be a property name (letters, digits and !#$%&'*+.^_\`|~- only)`)
    if (!HEADER_TEXT.test(value)) throw new CliError(`--props: the value of ${key} must be printable ASCII, not ${JSON.stringify(value)}`)
    return [key, value]
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
      if (o.messageId) headers['iothub-messageid'] = headerText('--message-id', o.messageId)
      if (o.correlationId) headers['iothub-correlationid'] = headerText('--correlation-id', o.correlationId)
      if (o.contentType) headers['iothub-contenttype'] = headerText('--content-type', o.contentType)
      if (o.contentEncoding) headers['iothub-contentencoding'] = headerText('--content-encoding', o.contentEncoding)
      if (o.expiry !== undefined) headers['iothub-expiry'] = new Date(Date.now() + intOption('--expiry', o.expiry, 1, 172_800) * 1000).toISOString()
      const { body } = await ctx.client().call('POST', `/devices/${segment(id)}/messages/devicebound`, { raw: Buffer.from(o.data ?? '', 'utf8'), headers })
      ctx.print(ctx.options.json ? json(body) : `queued a message for ${id}`)
    }))
  return c2d
}
