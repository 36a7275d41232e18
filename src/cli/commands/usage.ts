// `hyperhub usage`: today's quota and each throttle's counters (GET /hyperhub/metering).
import { Command } from 'commander'
import { action } from '../hyperhub.js'
import { fields, json, table } from '../output.js'

interface Counts { admitted: number; queued: number; refused: number; perSecond: number | null }
interface Metering {
  tier: string
  units: number
  quota: { day: string; used: number; quota: number | null; chunkBytes: number; operations: Record<string, { messages: number; operations: number; refused?: number }> }
  throttles: Record<string, Counts>
}

export function usageCommand(): Command {
  return new Command('usage')
    .description('the tier, today\'s message quota and each throttle\'s admitted, queued and refused operations')
    .action(action(async (ctx) => {
      const { body } = await ctx.client().call<Metering>('GET', '/hyperhub/metering')
      if (ctx.options.json) return ctx.print(json(body))
      const q = body.quota
      ctx.print([
        fields([
          ['tier', `${body.tier} × ${body.units}`], ['day (UTC)', q.day],
          ['messages today', q.quota === null ? `${q.used} (no daily quota)` : `${q.used} of ${q.quota} (${((100 * q.used) / q.quota).toFixed(1)}%)`],
          ['billed in chunks of', `${q.chunkBytes / 1024} KB`],
        ]),
        '',
        table(Object.entries(q.operations).filter(([, c]) => c.operations > 0), [
          { header: 'metered operation', value: ([name]) => name }, { header: 'operations', value: ([, c]) => c.operations },
          { header: 'messages', value: ([, c]) => c.messages }, { header: 'refused', value: ([, c]) => c.refused ?? 0 },
        ]),
        '',
        table(Object.entries(body.throttles), [
          { header: 'throttle', value: ([name]) => name }, { header: 'limit/s', value: ([, t]) => t.perSecond ?? 'none' },
          { header: 'admitted', value: ([, t]) => t.admitted }, { header: 'queued', value: ([, t]) => t.queued }, { header: 'refused (429)', value: ([, t]) => t.refused },
        ]),
      ].join('\n'))
    }))
}
