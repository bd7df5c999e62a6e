/**
 * `simulate` as an administrator runs it: the real server process (`node --import tsx src/server.ts`,
 * a bare environment, embedded database, loopback SERVER_URL so the development sign-in is on) and the
 * simulator as a process against its port. A correct server: exit 0, every step in the report. A server
 * whose SERVER_URL names another address: exit 1 and a diagnosis that says so.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { freePort } from '../helpers/ports.js'

const ROOT = new URL('../../', import.meta.url).pathname
const bareEnv = () => ({ PATH: process.env.PATH!, HOME: process.env.HOME ?? '/tmp' })
const started: { child: ChildProcess; dir: string }[] = []

afterAll(async () => {
  for (const s of started) {
    s.child.kill('SIGTERM')
    await new Promise((r) => s.child.once('exit', r))
    rmSync(s.dir, { recursive: true, force: true })
  }
})

/** The server process on `port`, ready when it has printed its banner. */
async function startServer(port: number, env: Record<string, string> = {}): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'byod-mdm-sim-'))
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: ROOT,
    env: { ...bareEnv(), DATA_DIR: path.join(dir, 'data'), PORT: String(port), HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  started.push({ child, dir })
  let out = ''
  child.stdout!.on('data', (d) => (out += d))
  child.stderr!.on('data', (d) => (out += d))
  const until = Date.now() + 120_000
  while (!/Check-in \/ commands/.test(out)) {
    if (child.exitCode !== null) throw new Error(`the server exited: ${out}`)
    if (Date.now() > until) throw new Error(`the server did not start: ${out}`)
    await new Promise((r) => setTimeout(r, 200))
  }
}

/** Runs the simulator; never throws on a non-zero exit. */
function simulate(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', 'src/cli/simulate.ts', ...args], { cwd: ROOT, env: bareEnv(), timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr })
    })
  })
}

describe('npm run simulate against a started server', () => {
  it('enrolls through every step: exit 0, the steps in the JSON report and on the screen', async () => {
    const port = await freePort()
    await startServer(port, { SERVER_URL: `http://127.0.0.1:${port}` })
    const server = `http://127.0.0.1:${port}`

    const json = await simulate(['--server', server, '--user', 'alice@example.com', '--sign-in', 'dev', '--json'])
    expect(json.code, json.stdout + json.stderr).toBe(0)
    const report = JSON.parse(json.stdout)
    expect(report.ok).toBe(true)
    expect(report.diagnosis).toBeUndefined()
    expect(report.steps.map((s: { step: string }) => s.step)).toEqual(['discovery', 'enroll-challenge', 'sign-in', 'enroll', 'profile', 'scep', 'authenticate', 'token-update', 'commands', 'declarative-sync'])
    expect(report.steps.every((s: { ok: boolean; ms: number }) => s.ok && s.ms >= 0)).toBe(true)
    expect(report.steps[0].summary).toBe(`mdm-byod at ${server}/api/mdm/apple/enroll/${new URL(report.enrollUrl).pathname.split('/').pop()}`)

    const text = await simulate(['--server', server, '--user', 'bob@example.com', '--sign-in', 'dev', '--model-family', 'Mac', '--checkout'])
    expect(text.code, text.stdout + text.stderr).toBe(0)
    for (const title of ['service discovery', 'enroll, first POST (401 challenge)', 'sign-in', 'profile signature and keys', 'SCEP', 'Authenticate', 'TokenUpdate', 'user channel TokenUpdate', 'Idle and commands', 'declarative management sync', 'CheckOut']) {
      expect(text.stdout).toMatch(new RegExp(`^  ok   ${title.replace(/[()]/g, '\\$&')}\\s+\\d+ ms`, 'm'))
    }
    expect(text.stdout).toMatch(/All 12 steps passed in \d+ ms: bob@example.com enrolled and checked out/)

    // Without --sign-in: the URL to open is printed, a person signs in in a browser (here: fetch) and
    // pastes the apple-remotemanagement-user-login: URL the browser ended on.
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/simulate.ts', '--server', server, '--user', 'dana@example.com'], { cwd: ROOT, env: bareEnv(), stdio: ['pipe', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (out += d))
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve))
    const until = Date.now() + 60_000
    while (!/Paste it here and press Enter:/.test(out) && Date.now() < until) await new Promise((r) => setTimeout(r, 100))
    const pageUrl = /Open this sign-in page in a browser and sign in as dana@example.com:\n\n {2}(\S+)/.exec(out)?.[1]
    expect(pageUrl, out).toMatch(new RegExp(`^${server}/mdm/sso/[^?]+\\?user-identifier=dana%40example.com$`))
    const page = await (await fetch(pageUrl!)).text()
    const form = /<form method="post" action="([^"]+)">([\s\S]*?)<\/form>/.exec(page)!
    const fields = new URLSearchParams([...form[2]!.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)].map((m) => [m[1]!, m[2]!.replace(/&#64;/g, '@')]))
    fields.set('email', 'dana@example.com')
    const signedIn = await fetch(form[1]!, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: fields.toString(), redirect: 'manual' })
    expect(signedIn.status).toBe(308)
    child.stdin.end(`${signedIn.headers.get('location')}\n`)
    expect(await exited, out).toBe(0)
    expect(out).toMatch(/ok {3}sign-in\s+\d+ ms {2}web sign-in \(browser\) returned an access token/)
    expect(out).toMatch(/All 10 steps passed/)
  }, 240_000)

  it('names SERVER_URL when the URLs the server hands out are not where the device reached it: exit 1', async () => {
    const [port, elsewhere] = [await freePort(), await freePort()]
    await startServer(port, { SERVER_URL: `http://127.0.0.1:${elsewhere}` })
    const res = await simulate(['--server', `http://127.0.0.1:${port}`, '--user', 'carol@example.com', '--sign-in', 'dev', '--json'])
    expect(res.code, res.stdout + res.stderr).toBe(1)
    const report = JSON.parse(res.stdout)
    expect(report.ok).toBe(false)
    expect(report.steps.map((s: { step: string; ok: boolean }) => [s.step, s.ok])).toEqual([
      ['discovery', true],
      ['enroll-challenge', false],
    ])
    expect(report.diagnosis).toMatchObject({ step: 'enroll-challenge', networkCode: 'ECONNREFUSED', url: expect.stringMatching(new RegExp(`^http://127\\.0\\.0\\.1:${elsewhere}/api/mdm/apple/enroll/`)) })
    expect(report.diagnosis.text).toContain(`SERVER_URL is http://127.0.0.1:${elsewhere} but you reached the server at http://127.0.0.1:${port}`)

    const text = await simulate(['--server', `http://127.0.0.1:${port}`, '--user', 'carol@example.com', '--sign-in', 'dev'])
    expect(text.code).toBe(1)
    expect(text.stdout).toMatch(/FAILED at enroll, first POST \(401 challenge\)\./)
    expect(text.stdout.replace(/\n/g, ' ')).toContain(`SERVER_URL is http://127.0.0.1:${elsewhere} but you reached the server at http://127.0.0.1:${port}`)
  }, 240_000)

  it('--enrollment device: an organisation-owned device for a device team; the team setting named for another team; load mode', async () => {
    const port = await freePort()
    await startServer(port, { SERVER_URL: `http://127.0.0.1:${port}`, ENROLL_DOMAINS: 'example.com=Fleet, example.org', ENROLL_DEVICE_TEAMS: 'Fleet' })
    const server = `http://127.0.0.1:${port}`

    const text = await simulate(['--server', server, '--user', 'eve@example.com', '--sign-in', 'dev', '--enrollment', 'device'])
    expect(text.code, text.stdout + text.stderr).toBe(0)
    expect(text.stdout).toMatch(/^Simulating iPhone12,1 \(iOS [\d.]+\) enrolling eve@example.com by account-driven device enrollment/)
    expect(text.stdout).toMatch(/^ {2}ok {3}service discovery\s+\d+ ms {2}mdm-adde at /m)
    const udid = /^ {2}ok {3}Authenticate\s+\d+ ms {2}UDID (\S+), serial number (\S+) \(/m.exec(text.stdout)
    expect(udid, text.stdout).not.toBeNull()
    expect(text.stdout).toContain(`All 10 steps passed`)
    expect(text.stdout).toContain(`eve@example.com is enrolled (device enrollment, UDID ${udid![1]}, serial number ${udid![2]}).`)

    const other = await simulate(['--server', server, '--user', 'finn@example.org', '--sign-in', 'dev', '--enrollment', 'device', '--json'])
    expect(other.code, other.stdout + other.stderr).toBe(1)
    const report = JSON.parse(other.stdout)
    expect(report.diagnosis).toMatchObject({ step: 'discovery', got: 'Version mdm-byod (user enrollment)' })
    expect(report.diagnosis.fix).toMatch(/example\.org accounts \(ENROLL_DOMAINS\) has enrollment_type user: set its enrollment_type to device .* ENROLL_DEVICE_TEAMS/)

    const load = await simulate(['--server', server, '--user', 'load@example.com', '--sign-in', 'dev', '--enrollment', 'device', '--devices', '2', '--concurrency', '2'])
    expect(load.code, load.stdout + load.stderr).toBe(0)
    expect(load.stdout).toMatch(/2\/2 devices enrolled \(account-driven device enrollment\)/)
  }, 240_000)

  it('explains its options with --help, and refuses load mode against a server that is not on a loopback address', async () => {
    const help = await simulate(['--help'])
    expect(help.code).toBe(0)
    expect(help.stdout).toMatch(/^Usage: npm run simulate -- --server <url> --user <email> \[options\]/)
    expect(help.stdout).toMatch(/^ {2}--enrollment <kind> {7}user: user enrollment \(mdm-byod/m)
    const kind = await simulate(['--server', 'http://localhost:8080', '--user', 'a@example.com', '--enrollment', 'kiosk'])
    expect(kind.code).toBe(2)
    expect(kind.stderr).toMatch(/--enrollment takes "user" \(mdm-byod\) or "device" \(mdm-adde\)/)
    const load = await simulate(['--server', 'https://mdm.example.com', '--user', 'a@example.com', '--sign-in', 'dev', '--devices', '5'])
    expect(load.code).toBe(2)
    expect(load.stderr).toMatch(/not a loopback address: add --i-own-this-server/)
    const bad = await simulate(['--server', 'https://mdm.example.com'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/--user must be an account name/)
  }, 60_000)
})
