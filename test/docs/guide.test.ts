/**
 * The administrator guide cannot rot (issue 17):
 * - every relative link in docs/ and the README resolves, files and #anchors;
 * - every environment variable the guide names exists in .env.example and in src/config;
 * - every code the server answers or logs is explained in docs/troubleshooting.md;
 * - every `curl` example against the server runs, in order, against a started server (the real app
 *   listening on a port, a device enrolled through the real endpoints, pushes to a fake APNs), and gets a
 *   2xx with what its `# answers:` lines claim; blocks that need your own domain say `<!-- not run -->`;
 * - the openssl commands of the APNs page run;
 * - the nginx blocks (TLS proxy, discovery proxy and redirect, load balancer) run in a real nginx in front
 *   of the server, and Apple's TLS rules are checked with openssl s_client. nginx is taken from $NGINX, the
 *   PATH or /usr/sbin/nginx; without one these tests are skipped (and say so).
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ADMIN_TOKEN } from '../helpers/admin.js'
import { buildTestApp, type TestApp } from '../helpers/app.js'
import type { Device } from '../helpers/device.js'
import { signIn } from '../helpers/enroll.js'
import { createPushIdentity, startFakeApns, type FakeApns } from '../helpers/fake-apns.js'
import { apnsEnv, pushableDevice } from '../helpers/push.js'
import { createTestIdp } from '../helpers/saml-idp.js'
import { freePort } from '../helpers/ports.js'
import { parsePlistDict, type PlistDict } from '../../src/protocol/plist.js'
import { anchors, checkClaim, codeBlocks, links, markdownFiles, prose, read, ROOT, shellCommands, type CodeBlock, type GuideCommand } from './markdown.js'

const GUIDE = markdownFiles().filter((f) => f.startsWith('docs/'))

describe('links', () => {
  it('every relative link in docs/ and the README resolves, files and anchors', () => {
    const broken: string[] = []
    for (const file of markdownFiles()) {
      for (const { target, line } of links(file)) {
        if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue // https:, mailto:
        const [pathPart, anchor] = target.split('#') as [string, string | undefined]
        const resolved = pathPart ? path.normalize(path.join(path.dirname(file), pathPart)) : file
        const where = `${file}:${line} -> ${target}`
        if (!existsSync(path.join(ROOT, resolved))) {
          broken.push(`${where}: no file ${resolved}`)
          continue
        }
        if (anchor !== undefined) {
          if (!resolved.endsWith('.md') || statSync(path.join(ROOT, resolved)).isDirectory()) broken.push(`${where}: anchor on a non-Markdown target`)
          else if (!anchors(resolved).has(anchor)) broken.push(`${where}: no heading #${anchor} in ${resolved}`)
        }
      }
    }
    expect(broken).toEqual([])
  })

  it('the README links the guide near the top', () => {
    const readme = read('README.md')
    const guide = readme.indexOf('](docs/README.md)')
    expect(guide).toBeGreaterThan(0)
    expect(guide).toBeLessThan(readme.indexOf('## Configuration'))
  })
})

describe('environment variables', () => {
  /** Shell variables of the guide's examples, not settings. */
  const SHELL_VARIABLES = new Set(['MDM', 'ADMIN', 'TEAM', 'ENROLLMENT', 'COMMAND_UUID', 'USER_ID', 'IDS'])

  const envExample = new Set([...read('.env.example').matchAll(/^#?\s?([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]!))
  const configText = readdirSync(path.join(ROOT, 'src/config'))
    .filter((f) => f.endsWith('.ts'))
    .map((f) => readFileSync(path.join(ROOT, 'src/config', f), 'utf8'))
    .join('\n')
  const inConfig = (name: string) => new RegExp(`(^|[^A-Z0-9_])${name}(?=['":])`, 'm').test(configText)

  /** Names the guide uses as settings: WORDS_WITH_UNDERSCORES anywhere, PREFIX_* wildcards, NAME= at a line start. */
  function named(file: string): { name: string; prefix: boolean; line: number }[] {
    const found: { name: string; prefix: boolean; line: number }[] = []
    read(file)
      .split('\n')
      .forEach((line, i) => {
        for (const m of line.matchAll(/(?<![A-Za-z0-9_$.-])([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)(_\*)?(?![A-Za-z0-9])/g)) found.push({ name: m[1]!, prefix: !!m[2], line: i + 1 })
        const assignment = /^\s*(?:export\s+)?([A-Z][A-Z0-9_]*)=/.exec(line)
        if (assignment) found.push({ name: assignment[1]!, prefix: false, line: i + 1 })
      })
    return found.filter((f) => !SHELL_VARIABLES.has(f.name))
  }

  it('every variable the guide names is in .env.example and read by src/config', () => {
    const problems: string[] = []
    let checked = 0
    for (const file of GUIDE) {
      for (const { name, prefix, line } of named(file)) {
        checked++
        if (prefix) {
          if (![...envExample].some((v) => v.startsWith(`${name}_`))) problems.push(`${file}:${line}: no variable ${name}_* in .env.example`)
          continue
        }
        if (!envExample.has(name)) problems.push(`${file}:${line}: ${name} is not in .env.example`)
        if (!inConfig(name)) problems.push(`${file}:${line}: ${name} is not read in src/config`)
      }
    }
    expect(problems).toEqual([])
    expect(checked).toBeGreaterThan(100)
  })

  it('a misspelt variable would be caught', () => {
    expect(envExample.has('SERVER_URL') && inConfig('SERVER_URL')).toBe(true)
    expect(envExample.has('SERVER_ULR') || inConfig('SERVER_ULR')).toBe(false)
    expect(inConfig('ESSO_DEVELOPER_APP_IDS')).toBe(true)
  })
})

describe('troubleshooting', () => {
  const src = (file: string) => readFileSync(path.join(ROOT, 'src', file), 'utf8')
  const walk = (dir: string): string[] =>
    readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? (e.name === 'apple' ? [] : walk(path.join(dir, e.name))) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : [],
    )
  const allSource = walk('src').map((f) => readFileSync(path.join(ROOT, f), 'utf8'))
  const literals = (text: string) => [...text.matchAll(/'([A-Za-z_.-]+)'/g)].map((m) => m[1]!)
  /** The string literals of a union type or const list, from its declaration to its end. */
  const declared = (file: string, start: RegExp) => {
    const text = src(file)
    const at = text.search(start)
    if (at < 0) throw new Error(`${start} not found in ${file}`)
    const rest = text.slice(at)
    const end = rest.search(/\n\s*\n|\n(export|const|function|\/\*\*)/)
    return literals(rest.slice(0, end < 0 ? undefined : end))
  }

  /** Every code the server answers or logs. */
  function serverCodes(): Set<string> {
    const codes = new Set<string>()
    for (const text of allSource) {
      for (const m of text.matchAll(/code: '([A-Za-z_.-]+)'/g)) codes.add(m[1]!)
      for (const m of text.matchAll(/(?:new AppError|super)\(\d{3}, '([a-z_]+)'/g)) codes.add(m[1]!)
      for (const m of text.matchAll(/ScepRequestError\('([A-Za-z]+)'/g)) codes.add(m[1]!)
      for (const m of text.matchAll(/CODE = '([A-Za-z_.-]+)'/g)) codes.add(m[1]!)
    }
    for (const m of src('services/scep.ts').matchAll(/refuse\('([A-Za-z]+)'/g)) codes.add(m[1]!)
    // The defaults of the generic error classes (BadRequestError is `bad_request` unless given a code).
    for (const m of src('errors.ts').matchAll(/\?\? '([a-z_]+)'/g)) codes.add(m[1]!)
    const lists = [
      declared('identity/index.ts', /export type SignInFailure =/),
      declared('services/oauth2.ts', /export type OAuth2ErrorCode =/),
      declared('services/tokens.ts', /export type TokenRefusal =/),
      declared('services/mdm-identity.ts', /export type ReauthReason =/),
      literals(/reason: TokenRefusal((?: \| '[a-z_]+')+)/.exec(src('services/enrollment.ts'))![1]!),
      declared('services/push.ts', /export const PUSH_STATUSES =/),
    ]
    for (const list of lists) for (const c of list) codes.add(c)
    const refusals = /const REFUSALS[^{]*\{([\s\S]*?)\n\}/.exec(src('services/mdm-access.ts'))![1]!
    for (const m of refusals.matchAll(/^\s+([a-z_]+):/gm)) codes.add(m[1]!)
    return codes
  }

  it('explains every code the server answers or logs', () => {
    const codes = serverCodes()
    expect(codes.size).toBeGreaterThan(80)
    for (const sample of ['device_identity_rejected', 'group_not_allowed', 'invalid_grant', 'enrollment_window_over', 'badAlg', 'config_error', 'com.apple.unrecognized.device', 'profile_already_issued', 'not_authenticated']) {
      expect(codes, sample).toContain(sample)
    }
    const text = read('docs/troubleshooting.md')
    const inCode = new Set([...text.matchAll(/`([^`]+)`/g)].flatMap((m) => m[1]!.split(/[^A-Za-z0-9_.-]+/)))
    const missing = [...codes].filter((c) => !inCode.has(c)).sort()
    expect(missing).toEqual([])
  })
})

describe('reading the guide', () => {
  it('"# answers:" claims: presence, lists, values', () => {
    const answer = { items: [{ id: 'a', status: 'active', push: { has_token: true } }, { id: 'b', status: 'active', push: { has_token: true } }], next_cursor: null }
    for (const ok of ['items[].id', 'items[].status=active', 'items[].push.has_token=true', 'next_cursor']) expect(checkClaim(answer, ok), ok).toBeNull()
    for (const bad of ['items[].name', 'items[].status=removed', 'count', 'next_cursor=x', 'items[].push.has_token=false']) expect(checkClaim(answer, bad), bad).not.toBeNull()
    expect(checkClaim({ items: [] }, 'items[].id')).toMatch(/not a non-empty list/)
  })

  it('commands: continuation lines joined, "# answers:" attached to the command before', () => {
    const commands = shellCommands({ file: 'x.md', line: 1, lang: 'sh', text: ['# a comment', 'curl -s \\', '  "$MDM/x"', '# answers: a, b[].c=1', '', 'X=$(curl -s "$MDM/y")'].join('\n') })
    expect(commands.map((c) => [c.command, c.answers, c.line])).toEqual([
      ['curl -s \\\n  "$MDM/x"', ['a', 'b[].c=1'], 3],
      ['X=$(curl -s "$MDM/y")', [], 7],
    ])
  })
})

// ------------------------------------------------------------------------------------------------
// The guide's commands against a started server
// ------------------------------------------------------------------------------------------------

/** The guide's example host, replaced by the test server's URL in every command. */
const EXAMPLE_SERVER = 'https://mdm.example.com'

let fake: FakeApns
let t: TestApp
let mdm: string
/** Alice's two devices, by their enrollment's id in the admin API. */
const devices = new Map<string, Device>()

async function startServer(): Promise<void> {
  fake = await startFakeApns()
  const identity = await fake.issuePushIdentity()
  const idp = await createTestIdp()
  const port = await freePort()
  mdm = `http://127.0.0.1:${port}`
  t = await buildTestApp({ env: { SERVER_URL: mdm, ADMIN_API_TOKEN: ADMIN_TOKEN, ...apnsEnv(fake, identity), ...idp.env } })
  await t.app.listen({ port, host: '127.0.0.1' })
  const alice = async () => signIn(t.app, { email: 'alice@example.com', userIdentifier: 'alice@example.com' })
  for (const user of [await alice(), await alice()]) {
    const { device } = await pushableDevice(t.app, { user })
    const row = await t.app.db.prisma.mdmEnrollment.findFirstOrThrow({ where: { enrollmentId: device.enrollmentId } })
    devices.set(row.id, device)
  }
}

interface Ran {
  status: number | null
  stdout: string
  stderr: string
  /** Each curl's HTTP status and body, in the order they ran. */
  calls: { status: number; body: string }[]
  vars: Record<string, string>
}

/** Runs guide commands one by one in bash, carrying shell variables from one to the next. */
class Shell {
  readonly dir = mkdtempSync(path.join(tmpdir(), 'byod-mdm-guide-'))
  private readonly state = path.join(this.dir, '.state')

  constructor(env: Record<string, string>) {
    const lines = Object.entries(env).map(([k, v]) => `export ${k}=${shellQuote(v)}`)
    writeFileSync(this.state, `${lines.join('\n')}\n`)
  }

  async run(command: string): Promise<Ran> {
    const calls = path.join(this.dir, '.calls')
    rmSync(calls, { recursive: true, force: true })
    mkdirSync(calls)
    const script = [
      `source ${shellQuote(this.state)}`,
      // Every curl also records its status (on stderr, whatever the command does with stdout) and body.
      `curl() { local n=$(( $(ls ${shellQuote(calls)} | wc -l) + 1 )); command curl -w '%{stderr}\\n__HTTP_STATUS__ %{http_code}\\n' "$@" | tee ${shellQuote(calls)}/$(printf %03d $n); return \${PIPESTATUS[0]}; }`,
      'set -a',
      command,
      'rc=$?',
      'set +a',
      `export -p > ${shellQuote(this.state)}`,
      `for v in TEAM ENROLLMENT COMMAND_UUID USER_ID; do printf '%s=%s\\n' "$v" "\${!v}"; done > ${shellQuote(path.join(this.dir, '.vars'))}`,
      'exit $rc',
    ].join('\n')
    // Asynchronously: the server answering these requests runs in this process.
    const res = await run('bash', ['-c', script], { cwd: this.dir })
    const statuses = [...res.stderr.matchAll(/__HTTP_STATUS__ (\d+)/g)].map((m) => Number(m[1]))
    const bodies = readdirSync(calls)
      .sort()
      .map((f) => readFileSync(path.join(calls, f), 'utf8'))
    const varsFile = path.join(this.dir, '.vars')
    const vars = Object.fromEntries(
      (existsSync(varsFile) ? readFileSync(varsFile, 'utf8') : '')
        .split('\n')
        .filter(Boolean)
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    )
    return { status: res.status, stdout: res.stdout, stderr: res.stderr, calls: statuses.map((status, i) => ({ status, body: bodies[i] ?? '' })), vars }
  }

  close(): void {
    rmSync(this.dir, { recursive: true, force: true })
  }
}

function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`
}

/** The guide's shell blocks that talk to the server, per file, in order. */
function serverBlocks(file: string): CodeBlock[] {
  return codeBlocks(file).filter((b) => (b.lang === 'sh' || b.lang === 'bash') && /\bcurl\b/.test(b.text) && !b.marker)
}

/** What a device does between two commands of the guide (the guide says "once the device has answered"). */
async function deviceStep(command: GuideCommand, ran: Ran): Promise<void> {
  if (!/"RequestType": "DeviceInformation"/.test(command.command)) return
  const device = devices.get(ran.vars.ENROLLMENT!)
  if (!device) throw new Error(`no emulated device for enrollment ${ran.vars.ENROLLMENT}`)
  // The device checks in (it was pushed) and answers what it gets, DeviceInformation included.
  for (let i = 0; i < 5; i++) {
    const res = await device.idle()
    if (!res.body) break
    const sent = parsePlistDict(res.body)
    const uuid = sent.CommandUUID as string
    const request = (sent.Command as PlistDict).RequestType
    const answer: PlistDict = request === 'DeviceInformation' ? { QueryResponses: { OSVersion: '18.2.1', ModelName: 'iPhone', DeviceName: 'Alice’s iPhone' } } : {}
    await device.idle(undefined, { Status: 'Acknowledged', CommandUUID: uuid, ...answer })
    if (uuid === ran.vars.COMMAND_UUID) break
  }
}

describe('the guide against a started server', () => {
  beforeAll(startServer, 60_000)
  afterAll(async () => {
    await t?.close()
    await fake?.close()
  })

  // Operations first: the other pages change the Default team (declarations queue commands).
  const order = ['docs/operations.md', ...GUIDE.filter((f) => f !== 'docs/operations.md')]
  const files = order.filter((f) => serverBlocks(f).length > 0)

  it('runs curl examples from these pages', () => {
    expect(files).toEqual(expect.arrayContaining(['docs/operations.md', 'docs/enrollment-sso.md', 'docs/apple-business-manager.md', 'docs/identity-providers.md']))
  })

  it('every curl block is run here or says why not', () => {
    const unmarked = GUIDE.flatMap((f) => codeBlocks(f)).filter((b) => /\bcurl\b/.test(b.text) && (b.lang === 'sh' || b.lang === 'bash'))
    for (const block of unmarked) {
      if (block.marker?.kind === 'not run') expect(block.marker.value.length, `${block.file}:${block.line}`).toBeGreaterThan(5)
    }
  })

  for (const file of files) {
    it(`${file}: every command answers 2xx with what it claims`, async () => {
      const shell = new Shell({ MDM: mdm, ADMIN_API_TOKEN: ADMIN_TOKEN, ADMIN: `Authorization: Bearer ${ADMIN_TOKEN}` })
      try {
        let curls = 0
        for (const block of serverBlocks(file)) {
          for (const command of shellCommands(block)) {
            const where = `${command.file}:${command.line}: ${command.command}`
            const ran = await shell.run(command.command.replaceAll(EXAMPLE_SERVER, mdm))
            expect(ran.status, `${where}\n${ran.stderr}`).toBe(0)
            curls += ran.calls.length
            for (const call of ran.calls) expect(call.status, `${where}\n${call.body}`).toBeGreaterThanOrEqual(200)
            for (const call of ran.calls) expect(call.status, `${where}\n${call.body}`).toBeLessThan(300)
            const output = /\s-o\s+(\S+)/.exec(command.command)
            if (output) expect(statSync(path.join(shell.dir, output[1]!)).size, where).toBeGreaterThan(0)
            if (command.answers.length) {
              const last = ran.calls.at(-1)
              expect(last, where).toBeDefined()
              let json: unknown
              expect(() => (json = JSON.parse(last!.body)), `${where}: not JSON: ${last!.body}`).not.toThrow()
              for (const claim of command.answers) expect(checkClaim(json, claim), `${where}\n# answers: ${claim}\n${last!.body}`).toBeNull()
            }
            await deviceStep(command, ran)
          }
        }
        expect(curls).toBeGreaterThan(0)
      } finally {
        shell.close()
      }
    })
  }

  it('the SP metadata the guide downloads is the SAML metadata with the values to paste', async () => {
    const res = await fetch(`${mdm}/api/v1/mdm/sso/metadata`)
    const xml = await res.text()
    expect(xml).toContain(`entityID="${mdm}/api/v1/mdm/sso/metadata"`)
    expect(xml).toContain(`Location="${mdm}/api/v1/mdm/sso/callback"`)
    const guide = read('docs/identity-providers.md')
    expect(guide).toContain('`https://mdm.example.com/api/v1/mdm/sso/metadata`')
    expect(guide).toContain('`https://mdm.example.com/api/v1/mdm/sso/callback`')
  })
})

describe('the APNs page', () => {
  const block = (name: string) => {
    const found = codeBlocks('docs/apns.md').find((b) => b.marker?.kind === 'test' && b.marker.value === name)
    if (!found) throw new Error(`no block marked test: ${name} in docs/apns.md`)
    return found.text
  }

  it('makes a key and a CSR as shown', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'byod-mdm-apns-'))
    try {
      execFileSync('bash', ['-e', '-c', block('apns-csr')], { cwd: dir, stdio: 'pipe' })
      const verified = execFileSync('openssl', ['req', '-in', 'push.csr', '-noout', '-verify', '-subject'], { cwd: dir, encoding: 'utf8', stdio: 'pipe' })
      expect(verified).toContain('byod-mdm push')
      expect(readFileSync(path.join(dir, 'push.key'), 'utf8')).toContain('PRIVATE KEY')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('reads the topic from a push certificate as shown', async () => {
    const identity = await createPushIdentity()
    const dir = mkdtempSync(path.join(tmpdir(), 'byod-mdm-apns-'))
    try {
      writeFileSync(path.join(dir, 'push.pem'), identity.certPem)
      const out = execFileSync('bash', ['-e', '-c', block('apns-topic')], { cwd: dir, encoding: 'utf8', stdio: 'pipe' })
      expect(out).toContain(`UID = ${identity.topic}`)
      expect(out).toContain('notAfter=')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

// ------------------------------------------------------------------------------------------------
// nginx in front of the server
// ------------------------------------------------------------------------------------------------

function findNginx(): string | undefined {
  const candidates = [process.env.NGINX, ...(process.env.PATH ?? '').split(':').map((d) => path.join(d, 'nginx')), '/usr/sbin/nginx']
  return candidates.find((c): c is string => !!c && existsSync(c))
}

const nginx = findNginx()
if (!nginx) console.warn('docs/guide.test.ts: no nginx found ($NGINX, PATH, /usr/sbin/nginx): the nginx configuration tests are skipped')

describe.skipIf(!nginx)('the nginx configuration of the guide', () => {
  let dir: string
  let proc: ChildProcess | undefined
  let port: number
  let conf: string
  let app: TestApp
  let ca: string

  const marked = (file: string, name: string) => {
    const found = codeBlocks(file).find((b) => b.marker?.kind === 'test' && b.marker.value === name)
    if (!found) throw new Error(`no block marked test: ${name} in ${file}`)
    return found.text
  }
  // Asynchronously: nginx passes these requests to a server running in this process.
  const sh = (command: string) => run('bash', ['-c', command], { cwd: dir })
  const curl = (args: string[]) => run('curl', ['-s', '--cacert', ca, '-w', '\n%{http_code} %{redirect_url}', ...args])

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'byod-mdm-nginx-'))
    for (const d of ['tmp', 'logs']) mkdirSync(path.join(dir, d))
    // A test CA and one certificate for the MDM host and the email domains (RSA 2048, SHA-256).
    const ssl = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' })
    ssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=Guide Test CA', '-keyout', 'ca.key', '-out', 'ca.pem'])
    ssl(['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=mdm.example.com', '-keyout', 'leaf.key', '-out', 'leaf.csr'])
    writeFileSync(path.join(dir, 'leaf.ext'), 'subjectAltName=DNS:mdm.example.com,DNS:example.com,DNS:example.org,DNS:lb.example.com\nextendedKeyUsage=serverAuth\n')
    ssl(['x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-sha256', '-extfile', 'leaf.ext', '-out', 'leaf.pem'])
    writeFileSync(path.join(dir, 'fullchain.pem'), readFileSync(path.join(dir, 'leaf.pem'), 'utf8') + readFileSync(path.join(dir, 'ca.pem'), 'utf8'))
    ca = path.join(dir, 'ca.pem')

    port = await freePort()
    const appPort = await freePort()
    app = await buildTestApp({ env: { SERVER_URL: 'https://mdm.example.com', TRUST_PROXY: '127.0.0.1' } })
    await app.app.listen({ port: appPort, host: '127.0.0.1' })

    const files = (text: string) =>
      text
        .replace(/listen 443 ssl;/g, `listen 127.0.0.1:${port} ssl;`)
        .replace(/\/etc\/ssl\/certs\/ca-certificates\.crt/g, ca)
        .replace(/\/etc\/ssl\/[\w.-]+\.fullchain\.pem/g, path.join(dir, 'fullchain.pem'))
        .replace(/\/etc\/ssl\/[\w.-]+\.key/g, path.join(dir, 'leaf.key'))
        .replace(/127\.0\.0\.1:8080/g, `127.0.0.1:${appPort}`)
        .replace(/10\.0\.0\.1[12]:8080/g, `127.0.0.1:${appPort}`)
    const tlsFor = (name: string, location: string) =>
      `server {\n    listen 127.0.0.1:${port} ssl;\n    server_name ${name};\n    ssl_certificate ${path.join(dir, 'fullchain.pem')};\n    ssl_certificate_key ${path.join(dir, 'leaf.key')};\n    ssl_protocols TLSv1.2 TLSv1.3;\n${location}\n}`
    conf = path.join(dir, 'nginx.conf')
    writeFileSync(
      conf,
      [
        'daemon off;',
        'master_process off;',
        'worker_processes 1;',
        `pid ${path.join(dir, 'nginx.pid')};`,
        `error_log ${path.join(dir, 'logs/error.log')} warn;`,
        'events { worker_connections 64; }',
        'http {',
        '    access_log off;',
        ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((k) => `    ${k}_temp_path ${path.join(dir, 'tmp', k)};`),
        // proxy_pass https://mdm.example.com resolves to this nginx itself, without DNS.
        `    upstream mdm.example.com { server 127.0.0.1:${port}; }`,
        files(marked('docs/deploy.md', 'nginx-upstream')),
        files(marked('docs/tls.md', 'nginx-mdm')),
        tlsFor('example.com', files(marked('docs/apple-business-manager.md', 'nginx-discovery-proxy'))),
        tlsFor('example.org', files(marked('docs/apple-business-manager.md', 'nginx-discovery-redirect'))),
        tlsFor('lb.example.com', '    location / { proxy_pass http://byod_mdm; }'),
        '}',
      ].join('\n'),
    )
    const test = spawnSync(nginx!, ['-t', '-p', dir, '-c', conf, '-e', path.join(dir, 'logs/error.log')], { encoding: 'utf8' })
    if (test.status !== 0) throw new Error(`nginx -t failed:\n${test.stderr}\n${readFileSync(conf, 'utf8')}`)
    proc = spawn(nginx!, ['-p', dir, '-c', conf, '-e', path.join(dir, 'logs/error.log')], { stdio: 'ignore' })
    for (let i = 0; i < 100; i++) {
      const listening = await new Promise<boolean>((resolve) => {
        const socket = connect(port, '127.0.0.1')
        socket.once('connect', () => {
          socket.destroy()
          resolve(true)
        })
        socket.once('error', () => resolve(false))
      })
      if (listening) return
      await new Promise((r) => setTimeout(r, 50))
    }
    throw new Error(`nginx did not listen: ${readFileSync(path.join(dir, 'logs/error.log'), 'utf8')}`)
  }, 60_000)

  afterAll(async () => {
    proc?.kill('SIGTERM')
    await app?.close()
    if (dir) rmSync(dir, { recursive: true, force: true })
  })

  const discovery = '/.well-known/com.apple.remotemanagement?user-identifier=alice@example.com&model-family=iPhone'
  const at = (host: string) => ['--resolve', `${host}:${port}:127.0.0.1`, `https://${host}:${port}`]

  it('the TLS proxy passes devices to the server (discovery, health)', async () => {
    const [resolve, host, base] = at('mdm.example.com')
    const res = await curl([resolve!, host!, `${base}${discovery}`])
    const [body, status] = splitStatus(res.stdout)
    expect(status, res.stderr).toBe('200')
    expect(JSON.parse(body).Servers[0]).toMatchObject({ Version: 'mdm-byod', BaseURL: expect.stringMatching(/^https:\/\/mdm\.example\.com\/api\/mdm\/apple\/enroll\//) })
    const ready = await curl([resolve!, host!, `${base}/readyz`])
    expect(splitStatus(ready.stdout)).toEqual(['{"status":"ready"}', '200', ''])
  })

  it('the email domain proxies discovery to the server, query string and all', async () => {
    const [resolve, host, base] = at('example.com')
    const [body, status] = splitStatus((await curl([resolve!, host!, `${base}${discovery}`])).stdout)
    expect(status).toBe('200')
    expect(JSON.parse(body).Servers[0].Version).toBe('mdm-byod')
  })

  it('the redirect keeps the query string', async () => {
    const [resolve, host, base] = at('example.org')
    const [, status, location] = splitStatus((await curl([resolve!, host!, `${base}${discovery}`])).stdout)
    expect(status).toBe('307')
    expect(location).toBe(`https://mdm.example.com${discovery}`)
  })

  it('the load balancer block sends requests to the server processes', async () => {
    const [resolve, host, base] = at('lb.example.com')
    expect(splitStatus((await curl([resolve!, host!, `${base}/healthz`])).stdout)).toEqual(['{"status":"ok"}', '200', ''])
  })

  it("meets Apple's TLS rules: the guide's checks show TLS 1.2 with ECDHE AES-GCM and Extended Master Secret, and TLS 1.3", async () => {
    const commands = marked('docs/tls.md', 'tls-check')
      .split('\n')
      .filter((l) => l.startsWith('openssl'))
      .map((l) => l.replace(/mdm\.example\.com:443/g, `127.0.0.1:${port}`).replace(/^openssl s_client /, `openssl s_client -CAfile ${shellQuote(ca)} `))
    expect(commands).toHaveLength(2)
    const tls12 = (await sh(commands[0]!)).stdout
    expect(tls12).toMatch(/Protocol\s*: TLSv1\.2/)
    expect(tls12).toMatch(/Cipher is ECDHE-RSA-AES(128|256)-GCM-SHA(256|384)/)
    expect(tls12).toContain('Extended master secret: yes')
    expect(tls12).toContain('Verify return code: 0 (ok)')
    const tls13 = (await sh(commands[1]!)).stdout
    // s_client prints the SSL-Session block (Protocol : TLSv1.3) only once a session ticket arrived; the
    // handshake line is always there.
    expect(tls13).toMatch(/New, TLSv1\.3, Cipher is TLS_AES_(128|256)_GCM|Protocol\s*: TLSv1\.3/)
  })

  it('refuses TLS 1.1, CBC suites and suites without forward secrecy', async () => {
    const handshake = async (args: string) => (await sh(`openssl s_client -connect 127.0.0.1:${port} -servername mdm.example.com ${args} </dev/null 2>&1`)).stdout
    for (const args of ["-tls1_1 -cipher 'DEFAULT:@SECLEVEL=0'", '-tls1_2 -cipher ECDHE-RSA-AES128-SHA256', '-tls1_2 -cipher ECDHE-RSA-AES256-SHA', '-tls1_2 -cipher AES128-GCM-SHA256']) {
      expect(await handshake(args), args).not.toMatch(/Cipher is (ECDHE|AES)/)
    }
  })
})

/** curl's `-w '\n%{http_code} %{redirect_url}'` output: body, status, redirect. */
function splitStatus(out: string): [string, string, string] {
  const nl = out.lastIndexOf('\n')
  const [status, location] = out.slice(nl + 1).split(' ') as [string, string]
  return [out.slice(0, nl), status, location ?? '']
}

/** A child process, asynchronously (the server under test shares this event loop), with a time limit. */
function run(command: string, args: string[], options: { cwd?: string } = {}): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
    child.on('error', reject)
    child.on('close', (status) => {
      clearTimeout(timer)
      resolve({ status, stdout, stderr })
    })
  })
}
