/**
 * The reliability figures (issue 16): each drill, fuzzer or replay test records one row of numbers
 * (inputs tried, crashes, 5xx, hangs, lost rows, duplicate rows, outage seconds, 503s served, recovery
 * time, ...) with `recordFigures`; `scripts/reliability-report.mjs` prints them as one table at the end
 * of the run. Rows go to FIGURES_FILE (JSON lines) when it is set, else nowhere: a plain `npm test` run
 * records nothing and leaves nothing behind.
 */
import { appendFileSync } from 'node:fs'

/** One row: `suite` names the drill or parser ("fuzz: plist", "Postgres stops under load"). */
export function recordFigures(suite: string, figures: Record<string, number>): void {
  const file = process.env.FIGURES_FILE
  if (!file) return
  appendFileSync(file, `${JSON.stringify({ suite, figures, at: new Date().toISOString() })}\n`)
}
