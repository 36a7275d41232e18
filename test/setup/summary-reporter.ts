// Prints one plain closing line, "tests: N passed, N failed, N skipped", that any CI log reader
// understands (vitest's own summary is coloured and spread over lines).
import type { Reporter, TestModule } from 'vitest/node'

export default class SummaryReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    let passed = 0, failed = 0, skipped = 0
    for (const m of modules) {
      const failedBefore = failed
      for (const t of m.children.allTests()) {
        const state = t.result().state
        if (state === 'passed') passed++
        else if (state === 'failed') failed++
        else skipped++
      }
      // a file that failed outside its tests (an import, or a hook: its tests were skipped) counts once
      if (m.state() === 'failed' && failed === failedBefore) failed++
    }
    process.stdout.write(`\ntests: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}\n`)
  }
}
