// Re-renders saved suite results into bench/RESULTS.md (and their charts): tsx bench/report/render.ts bench/results/<file>.json...
import { readFileSync } from 'node:fs'
import { renderReport, type SuiteData } from './report.js'

for (const file of process.argv.slice(2)) await renderReport(JSON.parse(readFileSync(file, 'utf8')) as SuiteData)
