// `hyperhub twin show|update`: a device's twin (tags and desired properties; reported ones are the device's).
import { Command } from 'commander'
import { action } from '../hyperhub.js'
import { CliError, json, parseJsonOption, segment } from '../output.js'

const twinPath = (id: string) => `/twins/${segment(id)}`

export function twinCommands(): Command {
  const twin = new Command('twin').description('show and update device twins')

  twin.command('show').argument('<device-id>')
    .description('the twin as JSON (tags, desired and reported properties, versions)')
    .action(action(async (ctx, id: string) => {
      const { body } = await ctx.client().call('GET', twinPath(id))
      ctx.print(json(body))
    }))

  twin.command('update').argument('<device-id>')
    .description('patch desired properties and tags (null removes a property); connected devices get the desired patch at once')
    .option('--desired <json>', 'desired properties to merge, e.g. \'{"interval":30}\'')
    .option('--tags <json>', 'tags to merge, e.g. \'{"site":"lab"}\'')
    .option('--etag <etag>', 'only if the twin still has this etag (412 otherwise)')
    .action(action(async (ctx, id: string, o: { desired?: string; tags?: string; etag?: string }) => {
      if (o.desired === undefined && o.tags === undefined) throw new CliError('twin update needs --desired or --tags (or both)')
      const patch: Record<string, unknown> = {}
      if (o.tags !== undefined) patch.tags = parseJsonOption('--tags', o.tags)
      if (o.desired !== undefined) patch.properties = { desired: parseJsonOption('--desired', o.desired) }
      const { body } = await ctx.client().call('PATCH', twinPath(id), {
        body: patch, headers: { 'if-match': o.etag ? `"${o.etag.replace(/^"|"$/g, '')}"` : '*' },
      })
      ctx.print(json(body))
    }))
  return twin
}
