/**
 * The real process, as an administrator runs it: no configuration, embedded database in DATA_DIR, the
 * banner with the URLs, graceful exit on SIGTERM, and data kept across restarts.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'

const ROOT = new URL('../../', import.meta.url).pathname

function start(env: Record<string, string>): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: ROOT,
    // A bare environment: only what a shell would have, plus what the test sets.
    env: { PATH: process.env.PATH!, HOME: process.env.HOME ?? '/tmp', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  child.stdout!.on('data', (d) => (out += d))
  child.stderr!.on('data', (d) => (out += d))
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  return { child, output: () => out, exited }
}

async function waitFor(check: () => boolean, ms: number): Promise<void> {
  const until = Date.now() + ms
  while (!check()) {
    if (Date.now() > until) throw new Error('timed out')
    await new Promise((r) => setTimeout(r, 100))
  }
}

describe('server process', () => {
  it('starts with no configuration, serves /readyz, exits cleanly on SIGTERM and keeps its data', async () => {
    const dataDir = path.join(mkdtempSync(path.join(tmpdir(), 'byod-mdm-proc-')), 'data')
    const env = { DATA_DIR: dataDir, PORT: '0', HOST: '127.0.0.1' }
    const tokens: string[] = []
    for (let run = 0; run < 2; run++) {
      const p = start(env)
      await waitFor(() => /Server listening at http:\/\/127\.0\.0\.1:(\d+)/.test(p.output()), 90_000)
      const port = p.output().match(/Server listening at http:\/\/127\.0\.0\.1:(\d+)/)![1]
      const ready = await fetch(`http://127.0.0.1:${port}/readyz`)
      expect(ready.status).toBe(200)
      const enroll = p.output().match(/Enroll \(Default\)\s+(\S+)/)![1]!
      expect(p.output()).toMatch(/Service discovery\s+http:\/\/localhost:0\/\.well-known\/com\.apple\.remotemanagement/)
      expect(p.output()).toMatch(/SCEP\s+\S+\/mdm\/apple\/scep/)
      expect(p.output()).toMatch(/Check-in \/ commands\s+\S+\/mdm\/apple\/mdm/)
      expect(p.output()).toMatch(/Sign-in\s+development sign-in \(no IdP configured/)
      tokens.push(enroll.split('/').pop()!)
      p.child.kill('SIGTERM')
      expect(await p.exited).toBe(0)
      expect(existsSync(path.join(dataDir, 'pglite.lock'))).toBe(false)
    }
    expect(existsSync(path.join(dataDir, 'server-secret'))).toBe(true)
    expect(tokens[1]).toBe(tokens[0])
  }, 240_000)

  it('stops with one line naming SERVER_SECRET when DATABASE_URL is set without it', async () => {
    const p = start({ DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/postgres', DATA_DIR: mkdtempSync(path.join(tmpdir(), 'byod-mdm-proc-')) })
    expect(await p.exited).toBe(1)
    const lines = p.output().trim().split('\n')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(/^configuration error: SERVER_SECRET: required when DATABASE_URL is set/)
  }, 90_000)

  it.each([
    ['SERVER_URL', { SERVER_URL: 'http://mdm.example.com', ALLOW_DEV_SIGNIN: 'true' }, /^configuration error: SERVER_URL: must be an https:\/\/ URL/],
    [
      'OIDC_REDIRECT_URL',
      { AUTH_METHOD: 'oauth2', OIDC_ISSUER: 'https://login.example.com', OIDC_CLIENT_ID: 'mdm', OIDC_CLIENT_SECRET: 'secret', OIDC_REDIRECT_URL: 'https://mdm.example.com/callback' },
      /^configuration error: OIDC_REDIRECT_URL: must use the apple-remotemanagement-user-login: scheme/,
    ],
  ])('stops with one line naming %s when it is one a device cannot use', async (_name, env, line) => {
    const p = start({ ...env, DATA_DIR: mkdtempSync(path.join(tmpdir(), 'byod-mdm-proc-')) })
    expect(await p.exited).toBe(1)
    const lines = p.output().trim().split('\n')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(line)
  }, 90_000)
})
