// `hyperhub invoke <device> <method>`: a direct method, answered by the device (or 404103 if it is offline).
import { Command } from 'commander'
import { action } from '../hyperhub.js'
import { fields, intOption, json, parseJsonOption, segment } from '../output.js'

export function invokeCommand(): Command {
  return new Command('invoke').argument('<device-id>').argument('<method-name>')
    .description('invoke a direct method on a connected device and print its status and payload')
    .option('--payload <json>', 'the method\'s payload', 'null')
    .option('--timeout <seconds>', 'how long the device has to answer (5..300)', '30')
    .option('--connect-timeout <seconds>', 'how long to wait for the device to connect (0..300)', '0')
    .option('--module <module-id>', 'a module\'s method instead of the device\'s')
    .action(action(async (ctx, id: string, methodName: string, o: { payload: string; timeout: string; connectTimeout: string; module?: string }) => {
      const payload = parseJsonOption('--payload', o.payload)
      const timeout = intOption('--timeout', o.timeout, 5, 300)
      const connectTimeout = intOption('--connect-timeout', o.connectTimeout, 0, 300)
      const path = `/twins/${segment(id)}${o.module ? `/modules/${segment(o.module)}` : ''}/methods`
      const { body } = await ctx.client().call<{ status: number; payload: unknown }>('POST', path, {
        body: { methodName, payload, responseTimeoutInSeconds: timeout, connectTimeoutInSeconds: connectTimeout },
        // the hub answers when the device does, or at the timeouts
        timeoutMs: (timeout + connectTimeout + 10) * 1000,
      })
      ctx.print(ctx.options.json ? json(body) : fields([['status', body.status], ['payload', json(body.payload, 0)]]))
    }))
}
