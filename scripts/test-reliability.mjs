#!/usr/bin/env node
// `npm run test:reliability` (after `npm run build`): the fault drills in their long form (more devices,
// longer load, repeated kills: RELIABILITY_LONG=1) against the built server (RELIABILITY_BUILT=1), plus
// every fuzzer of the suite (test files whose path contains "fuzz"), with FIGURES_FILE set; then the
// figures as one table (scripts/reliability-report.mjs). Exits with vitest's status.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'

const root = new URL('..', import.meta.url).pathname
const figures = process.env.FIGURES_FILE || path.join(mkdtempSync(path.join(tmpdir(), 'byod-mdm-figures-')), 'figures.jsonl')
writeFileSync(figures, '')
if (!process.env.TEST_DATABASE_URL) {
  process.stderr.write('note: TEST_DATABASE_URL is not set: the drills that need a Postgres server are skipped (e.g. TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test)\n')
}
const env = { ...process.env, FIGURES_FILE: figures, RELIABILITY_LONG: '1', RELIABILITY_BUILT: '1' }
// Long drills: no per-test timeout from the default config beyond what each test sets.
const vitest = spawnSync(process.execPath, [path.join(root, 'node_modules', 'vitest', 'vitest.mjs'), 'run', 'test/reliability', 'fuzz', '--maxWorkers', process.env.RELIABILITY_WORKERS || '2'], { cwd: root, env, stdio: 'inherit' })
const report = spawnSync(process.execPath, [path.join(root, 'scripts', 'reliability-report.mjs'), figures], { cwd: root, encoding: 'utf8' })
process.stdout.write(`\nReliability figures (${figures}):\n\n${report.stdout}`)
if (report.stderr) process.stderr.write(report.stderr)
process.exit(vitest.status ?? 1)
