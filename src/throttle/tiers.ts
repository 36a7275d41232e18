// Azure IoT Hub's tiers as numbers (../shared/spec/quotas-throttling.md): the operation throttles per
// second for a tier and unit count, with the documented "higher of" floors, the daily message quota
// and its meter chunk. `unlimited` (the default) throttles and meters nothing that refuses.

export const TIERS = ['unlimited', 'F1', 'B1', 'B2', 'B3', 'S1', 'S2', 'S3'] as const
export type TierName = (typeof TIERS)[number]

export const THROTTLES = [
  'registry', 'connections', 'd2c', 'fileUploads', 'queries', 'c2dSends', 'c2dReceives', 'methodKB', 'twinReads', 'twinUpdates', 'jobs', 'jobDeviceOps', 'configurations',
] as const
export type ThrottleName = (typeof THROTTLES)[number]

export interface TierSetting {
  tier: TierName
  units: number
  /** per-second limits that replace the tier's, for tests and what-if runs */
  overrides?: Partial<Record<ThrottleName, number>>
}

export interface TierLimits {
  tier: TierName
  units: number
  /** per second; absent = not throttled */
  throttles: Partial<Record<ThrottleName, number>>
  /** billable messages per UTC day; undefined = no quota */
  messagesPerDay?: number
  /** bytes per billed message */
  meterChunkBytes: number
  /** Basic tiers lack C2D, twins, methods, jobs, configurations (403010) */
  basic: boolean
}

const perMinute = (n: number) => n / 60
type Edition = 'free1' | 'tier2' | 'tier3'
const EDITION: Record<Exclude<TierName, 'unlimited'>, Edition> = { F1: 'free1', B1: 'free1', S1: 'free1', B2: 'tier2', S2: 'tier2', B3: 'tier3', S3: 'tier3' }
const MAX_UNITS: Record<Exclude<TierName, 'unlimited'>, number> = { F1: 1, B1: 200, S1: 200, B2: 200, S2: 200, B3: 10, S3: 10 }
const MESSAGES_PER_DAY_PER_UNIT: Record<Exclude<TierName, 'unlimited'>, number> = { F1: 8000, B1: 400_000, S1: 400_000, B2: 6_000_000, S2: 6_000_000, B3: 300_000_000, S3: 300_000_000 }

/** The spec's throttle table, per second, for `units` units of an edition. */
function tableFor(edition: Edition, units: number): Record<ThrottleName, number> {
  const u = units
  switch (edition) {
    case 'free1': return {
      registry: perMinute(100) * u, connections: Math.max(100, 12 * u), d2c: Math.max(100, 12 * u), fileUploads: perMinute(100) * u,
      queries: perMinute(20) * u, c2dSends: perMinute(100) * u, c2dReceives: perMinute(1000) * u, methodKB: 160 * u,
      twinReads: 100, twinUpdates: 50, jobs: perMinute(100) * u, jobDeviceOps: 10, configurations: perMinute(20) * u,
    }
    case 'tier2': return {
      registry: perMinute(100) * u, connections: 120 * u, d2c: 120 * u, fileUploads: perMinute(100) * u,
      queries: perMinute(20) * u, c2dSends: perMinute(100) * u, c2dReceives: perMinute(1000) * u, methodKB: 480 * u,
      twinReads: Math.max(100, 10 * u), twinUpdates: Math.max(50, 5 * u), jobs: perMinute(100) * u, jobDeviceOps: Math.max(10, u), configurations: perMinute(20) * u,
    }
    case 'tier3': return {
      registry: perMinute(5000) * u, connections: 6000 * u, d2c: 6000 * u, fileUploads: perMinute(5000) * u,
      queries: perMinute(1000) * u, c2dSends: perMinute(5000) * u, c2dReceives: perMinute(50_000) * u, methodKB: 24 * 1024 * u,
      twinReads: 500 * u, twinUpdates: 250 * u, jobs: perMinute(5000) * u, jobDeviceOps: 50 * u, configurations: perMinute(20) * u,
    }
  }
}

export class TierError extends Error {}

/** Checks a setting and works out its limits; throws TierError naming what is wrong. */
export function tierLimits(setting: TierSetting): TierLimits {
  const { tier, units } = setting
  if (!TIERS.includes(tier)) throw new TierError(`tier must be one of ${TIERS.join(', ')}, not ${String(tier)}`)
  if (!Number.isInteger(units) || units < 1) throw new TierError(`units must be a whole number from 1, not ${String(units)}`)
  const overrides = setting.overrides ?? {}
  for (const [name, value] of Object.entries(overrides)) {
    if (!THROTTLES.includes(name as ThrottleName)) throw new TierError(`there is no throttle ${name}; there are ${THROTTLES.join(', ')}`)
    if (typeof value !== 'number' || !(value > 0) || !Number.isFinite(value)) throw new TierError(`the limit for ${name} must be a positive number per second, not ${String(value)}`)
  }
  if (tier === 'unlimited') return { tier, units, throttles: { ...overrides }, meterChunkBytes: 4096, basic: false }
  if (units > MAX_UNITS[tier]) throw new TierError(`${tier} has at most ${MAX_UNITS[tier]} unit${MAX_UNITS[tier] === 1 ? '' : 's'}, not ${units}`)
  return {
    tier, units,
    throttles: { ...tableFor(EDITION[tier], units), ...overrides },
    messagesPerDay: MESSAGES_PER_DAY_PER_UNIT[tier] * units,
    meterChunkBytes: tier === 'F1' ? 512 : 4096,
    basic: tier.startsWith('B'),
  }
}

/** `S1`, `S1:10`, `unlimited`: the command-line form. */
export function parseTier(text: string): TierSetting {
  const [tier, units] = text.split(':')
  return { tier: tier as TierName, units: units === undefined ? 1 : Number(units) }
}
