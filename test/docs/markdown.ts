/**
 * Reading the administrator guide (docs/*.md) the way the docs tests need: fenced code blocks with the
 * marker comment before them, links outside code, headings as GitHub turns them into anchors, and the
 * guide's shell commands with the `# answers:` lines that say what each answer holds.
 */
import { readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'

export const ROOT = path.resolve(import.meta.dirname, '../..')
export const DOCS = path.join(ROOT, 'docs')

/** Every Markdown file of the guide, and the README that links to it (paths relative to ROOT). */
export function markdownFiles(): string[] {
  return [...readdirSync(DOCS).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`), 'README.md']
}

export function read(file: string): string {
  return readFileSync(path.join(ROOT, file), 'utf8')
}

export interface CodeBlock {
  file: string
  /** 1-based line of the opening fence. */
  line: number
  lang: string
  text: string
  /** `<!-- test: NAME -->` or `<!-- not run: REASON -->` right before the fence (blank lines allowed). */
  marker?: { kind: 'test' | 'not run'; value: string }
}

const FENCE = /^(\s*)(```+)(.*)$/

export function codeBlocks(file: string): CodeBlock[] {
  const lines = read(file).split('\n')
  const blocks: CodeBlock[] = []
  for (let i = 0; i < lines.length; i++) {
    const open = FENCE.exec(lines[i]!)
    if (!open) continue
    const indent = open[1]!.length
    const body: string[] = []
    let j = i + 1
    for (; j < lines.length && !new RegExp(`^\\s*${open[2]}\\s*$`).test(lines[j]!); j++) body.push(lines[j]!.slice(Math.min(indent, lines[j]!.length - lines[j]!.trimStart().length)))
    let marker: CodeBlock['marker']
    for (let k = i - 1; k >= 0 && k >= i - 3; k--) {
      const m = /^\s*<!--\s*(test|not run):\s*(.+?)\s*-->\s*$/.exec(lines[k]!)
      if (m) {
        marker = { kind: m[1] as 'test' | 'not run', value: m[2]! }
        break
      }
      if (lines[k]!.trim() !== '') break
    }
    blocks.push({ file, line: i + 1, lang: open[3]!.trim().split(/\s+/)[0] ?? '', text: body.join('\n'), marker })
    i = j
  }
  return blocks
}

/** The file's text with fenced blocks, inline code and HTML comments blanked (same line count). */
export function prose(file: string): string {
  const out: string[] = []
  let fence: string | null = null
  for (const line of read(file).split('\n')) {
    const open = FENCE.exec(line)
    if (fence) {
      if (open && open[2] === fence && open[3]!.trim() === '') fence = null
      out.push('')
      continue
    }
    if (open) {
      fence = open[2]!
      out.push('')
      continue
    }
    out.push(line.replace(/`[^`]*`/g, '``'))
  }
  return out.join('\n').replace(/<!--[\s\S]*?-->/g, (c) => c.replace(/[^\n]/g, ''))
}

/** `[text](target)` links outside code. */
export function links(file: string): { target: string; line: number }[] {
  const found: { target: string; line: number }[] = []
  prose(file)
    .split('\n')
    .forEach((line, i) => {
      for (const m of line.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) found.push({ target: m[1]!, line: i + 1 })
    })
  return found
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens, -1 -2 for repeats. */
export function anchors(file: string): Set<string> {
  const seen = new Map<string, number>()
  const result = new Set<string>()
  let fence: string | null = null
  for (const line of read(file).split('\n')) {
    const open = FENCE.exec(line)
    if (fence) {
      if (open && open[2] === fence) fence = null
      continue
    }
    if (open) {
      fence = open[2]!
      continue
    }
    const h = /^#{1,6}\s+(.+?)\s*#*\s*$/.exec(line)
    if (!h) continue
    const text = h[1]!.replace(/\[([^\]]*)\]\([^)]*\)/g, '$1').replace(/`/g, '')
    const slug = text
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/ /g, '-')
    const n = seen.get(slug) ?? 0
    seen.set(slug, n + 1)
    result.add(n === 0 ? slug : `${slug}-${n}`)
  }
  return result
}

/** One shell command of a guide block (continuation lines joined) and the `# answers:` claims after it. */
export interface GuideCommand {
  file: string
  line: number
  command: string
  answers: string[]
}

export function shellCommands(block: CodeBlock): GuideCommand[] {
  const commands: GuideCommand[] = []
  const lines = block.text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!
    const answers = /^\s*#\s*answers:\s*(.+)$/.exec(line)
    if (answers) {
      const last = commands.at(-1)
      if (!last) throw new Error(`${block.file}:${block.line + i + 1}: "# answers:" before any command`)
      last.answers.push(...answers[1]!.split(',').map((s) => s.trim()).filter(Boolean))
      continue
    }
    if (line.trim() === '' || line.trim().startsWith('#')) continue
    let command = line
    const start = i
    while (command.endsWith('\\') && i + 1 < lines.length) command = `${command}\n${lines[++i]!}`
    commands.push({ file: block.file, line: block.line + start + 1, command, answers: [] })
  }
  return commands
}

/**
 * Checks one `# answers:` claim against a JSON answer: `a.b` present, `a[].b` a non-empty list whose every
 * item has `b`, `path=value` equal to value (compared as text). Returns the problem, or null.
 */
export function checkClaim(value: unknown, claim: string): string | null {
  const eq = claim.indexOf('=')
  const pathText = eq < 0 ? claim : claim.slice(0, eq)
  const expected = eq < 0 ? undefined : claim.slice(eq + 1)
  const walk = (v: unknown, segments: string[], at: string): string | null => {
    if (segments.length === 0) {
      if (v === undefined) return `${at} is missing`
      if (expected !== undefined && String(v) !== expected) return `${at} is ${JSON.stringify(v)}, not ${expected}`
      return null
    }
    const [segment, ...rest] = segments
    const list = segment!.endsWith('[]')
    const key = list ? segment!.slice(0, -2) : segment!
    const next = v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[key] : undefined
    const where = at ? `${at}.${key}` : key
    if (!list) return walk(next, rest, where)
    if (!Array.isArray(next) || next.length === 0) return `${where} is not a non-empty list (${JSON.stringify(next)})`
    for (const [i, item] of next.entries()) {
      const problem = walk(item, rest, `${where}[${i}]`)
      if (problem) return problem
    }
    return null
  }
  return walk(value, pathText.split('.'), '')
}
