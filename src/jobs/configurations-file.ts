// Configurations in import and export jobs (`includeConfigurations`): the export writes one
// configuration per line (as GET /configurations/{id} answers it) to `configurations.txt`; the import
// reads such a file and creates each configuration, or updates one that exists (labels, condition,
// priority, metrics; its content cannot change, as with PUT). A line that fails is reported with
// its number and the rest go on. A hub holds at most 100 configurations, so both files are small;
// they are still read and written a line at a time.
import { configurationJson, type ConfigurationStore } from '../configurations/configuration-store.js'
import { checkConfigurationQuery } from '../rest/configuration-routes.js'
import { HubError } from '../rest/hub-error.js'
import type { StreamLine } from './json-lines.js'

export const CONFIGURATIONS_BLOB = 'configurations.txt'

export interface ConfigurationLineError { configurationId?: string; errorCode: string; errorStatus: string; lineNumber: number }

export async function exportConfigurations(store: ConfigurationStore, write: (line: string) => Promise<void> | void): Promise<number> {
  const all = store.all()
  for (const c of all) await write(JSON.stringify(configurationJson(c)) + '\n')
  return all.length
}

export async function importConfigurations(lines: AsyncIterable<StreamLine>, store: ConfigurationStore, o: {
  isCancelled: () => boolean
  reportError: (e: ConfigurationLineError) => Promise<void> | void
}): Promise<{ lines: number; imported: number; failed: number }> {
  const counts = { lines: 0, imported: 0, failed: 0 }
  for await (const line of lines) {
    if (o.isCancelled()) break
    if (line.text !== undefined && line.text.length === 0) continue
    counts.lines++
    let id: string | undefined
    try {
      if (line.text === undefined) throw new HubError(400004, 'the line is too long')
      let body: unknown
      try { body = JSON.parse(line.text.toString('utf8')) } catch { throw new HubError(400012, 'the line is not valid JSON') }
      if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HubError(400004, 'the line must be a configuration object')
      const { etag: _etag, systemMetrics: _system, createdTimeUtc: _c, lastUpdatedTimeUtc: _u, ...rest } = body as Record<string, unknown>
      id = typeof rest.id === 'string' ? rest.id : undefined
      if (id === undefined) throw new HubError(400004, 'the line has no configuration id')
      // a metrics object as GET answers it carries results beside its queries: only the queries are imported
      const metrics = rest.metrics as { queries?: unknown } | undefined
      const input = { ...rest, metrics: metrics && typeof metrics === 'object' ? { queries: metrics.queries } : metrics }
      const exists = store.all().some((c) => c.id === id)
      await store.put(id, input, exists ? '*' : undefined, checkConfigurationQuery)
      counts.imported++
    } catch (e) {
      if (!(e instanceof HubError)) throw e
      counts.failed++
      await o.reportError({ ...(id !== undefined ? { configurationId: id } : {}), errorCode: e.codeName, errorStatus: e.message, lineNumber: line.lineNumber })
    }
  }
  return counts
}
