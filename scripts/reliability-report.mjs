#!/usr/bin/env node
// Prints the reliability figures (issue 16) as one Markdown table: one row per drill, fuzzer or replay
// test, from the JSON lines test/helpers/figures.ts appends to FIGURES_FILE. Rows of the same suite (a
// test retried, a file run twice) are added up; seconds columns keep the largest. Blank where a figure
// does not apply. Usage: node scripts/reliability-report.mjs <figures.jsonl>
import { readFileSync } from 'node:fs'

const COLUMNS = ['inputs', 'accepted', 'refused', 'crashes', '5xx', 'hangs', 'lost rows', 'duplicate rows', 'outage s', '503s', 'recovery s']
const isSeconds = (name) => name.endsWith(' s')

const file = process.argv[2]
if (!file) {
  process.stderr.write('usage: node scripts/reliability-report.mjs <figures.jsonl>\n')
  process.exit(2)
}
let text = ''
try {
  text = readFileSync(file, 'utf8')
} catch (err) {
  process.stderr.write(`cannot read ${file}: ${err.message}\n`)
  process.exit(1)
}

/** suite -> figures, in the order suites first appear. */
const rows = new Map()
const extra = new Set()
for (const [i, line] of text.split('\n').entries()) {
  if (!line.trim()) continue
  let row
  try {
    row = JSON.parse(line)
  } catch {
    process.stderr.write(`${file}:${i + 1}: not JSON, skipped\n`)
    continue
  }
  if (typeof row?.suite !== 'string' || typeof row.figures !== 'object' || row.figures === null) continue
  const into = rows.get(row.suite) ?? {}
  for (const [name, value] of Object.entries(row.figures)) {
    if (typeof value !== 'number' || !Number.isFinite(value)) continue
    if (!COLUMNS.includes(name)) extra.add(name)
    into[name] = name in into ? (isSeconds(name) ? Math.max(into[name], value) : into[name] + value) : value
  }
  rows.set(row.suite, into)
}

const columns = [...COLUMNS, ...[...extra].sort()]
const cell = (v) => (v === undefined ? '' : Number.isInteger(v) ? String(v) : v.toFixed(1))
const escape = (s) => s.replaceAll('|', '\\|')
const out = [`| suite | ${columns.join(' | ')} |`, `|:--|${columns.map(() => '--:').join('|')}|`]
for (const [suite, figures] of rows) out.push(`| ${escape(suite)} | ${columns.map((c) => cell(figures[c])).join(' | ')} |`)
if (rows.size === 0) out.push(`| (no figures in ${escape(file)}) | ${columns.map(() => '').join(' | ')} |`)
process.stdout.write(`${out.join('\n')}\n`)
