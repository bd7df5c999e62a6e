/**
 * The OAuth 2 token endpoint (`POST /api/v1/mdm/oauth2/token/:team`) fuzzed through the real app with a
 * real OpenID provider behind it (oidc-provider, test/helpers/oidc-idp.ts): SECURITY.md rows 16 and 29.
 * Inputs are forms built from random and real values (codes the IdP issued, a refresh token we issued,
 * the right and wrong redirect URIs and client ids, repeated and unknown parameters), and mutations of a
 * valid form's bytes. Every input gets an RFC 6749 answer in bounded time: 200 with tokens, or a 4xx
 * `{error, error_description}` with `Cache-Control: no-store`; never a 5xx; a refusal mints nothing.
 */
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildTestApp, type TestApp } from '../helpers/app.js'
import { postEnroll } from '../helpers/enroll.js'
import { oauth2Env, tokenRows } from '../helpers/oauth2.js'
import { parseBearerChallenge, signInAtIdp, type Challenge } from '../helpers/oauth2-device.js'
import { APPLE_REDIRECT_URI, startTestIdp, type TestIdp } from '../helpers/oidc-idp.js'
import { applyAll, classifyResponse, FILE_TIMEOUT, kinds, mutationsArb, runs, Tally } from './fuzz.js'

let idp: TestIdp
let t: TestApp
let challenge: Challenge
const tallies: Record<string, Tally> = {}
const tally = (name: string) => (tallies[name] ??= new Tally())
const minted: Record<string, number> = {}

beforeAll(async () => {
  idp = await startTestIdp()
  idp.accounts.set('fuzz-sub', { sub: 'fuzz-sub', password: 'pa55word', email: 'fuzz@example.com', name: 'Fuzz' })
  t = await buildTestApp({ env: oauth2Env(idp, { OAUTH2_RATE_LIMIT: '1000000' }) })
  challenge = parseBearerChallenge((await postEnroll(t.app)).headers['www-authenticate'] as string)
}, 120_000)
afterAll(async () => {
  for (const [name, x] of Object.entries(tallies)) x.record(`fuzz: ${name}`, name in minted ? { 'tokens minted': minted[name]! } : {})
  await t?.close()
  await idp?.close()
})

const code = async () => (await signInAtIdp(challenge, { login: 'fuzz@example.com', password: 'pa55word' })).code
const path = () => new URL(challenge['token-url']!).pathname
const post = (payload: string | Buffer, contentType = 'application/x-www-form-urlencoded') => t.app.inject({ method: 'POST', url: path(), headers: { 'content-type': contentType }, payload })

function expectOAuthAnswer(res: { statusCode: number; headers: Record<string, unknown>; body: string }) {
  expect(res.headers['cache-control']).toBe('no-store')
  if (res.statusCode >= 400 && res.statusCode < 500) {
    const body = JSON.parse(res.body) as Record<string, unknown>
    expect(Object.keys(body).sort()).toEqual(['error', 'error_description'])
    expect(typeof body.error).toBe('string')
  }
}

async function fuzz(name: string, numRuns: number, arb: fc.Arbitrary<{ build: (real: { codes: string[]; refresh: string }) => string | Buffer; label: string }>, maxAccepted: number) {
  const x = tally(name)
  const codes = [await code(), await code()]
  const first = await post(new URLSearchParams({ grant_type: 'authorization_code', code: await code(), redirect_uri: APPLE_REDIRECT_URI, client_id: idp.clientId }).toString())
  expect(first.statusCode, first.body).toBe(200)
  const real = { codes, refresh: (first.json() as { refresh_token: string }).refresh_token }
  const before = await tokenRows(t.app)
  await fc.assert(
    fc.asyncProperty(arb, async ({ build, label }) => {
      const payload = build(real)
      const res = await classifyResponse(x, () => post(payload), () => `${label} ${String(payload).slice(0, 200)}`)
      if (res && res.statusCode < 500) expectOAuthAnswer(res)
    }),
    { numRuns },
  )
  minted[name] = (await tokenRows(t.app)).accessTokens - before.accessTokens
  expect(x.failures).toBe('')
  expect(minted[name]).toBe(x.accepted)
  expect(x.accepted).toBeLessThanOrEqual(maxAccepted)
}

const text = fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 40 }), fc.constant(''), fc.constant('A'.repeat(5000)))

describe('token endpoint', () => {
  it('random forms with real and made-up values: an RFC 6749 answer each, no 5xx, at most the real grants redeemed', async () => {
    const param = (real: { codes: string[]; refresh: string }) => ({
      grant_type: fc.constantFrom('authorization_code', 'refresh_token', 'password', 'client_credentials', 'urn:ietf:params:oauth:grant-type:jwt-bearer', '', 'AUTHORIZATION_CODE'),
      code: fc.oneof(text, fc.constantFrom(...real.codes), fc.constantFrom(...real.codes).map((c) => c.slice(0, -1)), fc.constantFrom(...real.codes).map((c) => `${c}x`)),
      refresh_token: fc.oneof(text, fc.constant(real.refresh), fc.constant(real.refresh.slice(1))),
      redirect_uri: fc.oneof(fc.constant(APPLE_REDIRECT_URI), fc.constant('https://evil.example/cb'), text),
      client_id: fc.oneof(fc.constant(idp.clientId), text),
      scope: text,
    })
    // The real values are only known in fuzz(): the arbitrary picks by name and index, build() resolves them.
    const arb = fc
      .record({
        keys: fc.subarray(['grant_type', 'code', 'refresh_token', 'redirect_uri', 'client_id', 'scope'] as const),
        seed: fc.integer(),
        repeat: fc.option(fc.constantFrom('grant_type', 'code', 'client_id'), { nil: undefined }),
        extra: fc.option(fc.tuple(fc.string({ maxLength: 10 }), text), { nil: undefined }),
      })
      .map(({ keys, seed, repeat, extra }) => ({
        label: `${keys.join(',')} repeat=${repeat ?? ''}`,
        build: (real: { codes: string[]; refresh: string }) => {
          const params = new URLSearchParams()
          const arbs = param(real)
          for (const k of keys) params.append(k, fc.sample(arbs[k], { seed: seed + k.length, numRuns: 1 })[0]!)
          if (repeat) params.append(repeat, 'again')
          if (extra) params.append(extra[0], extra[1])
          return params.toString()
        },
      }))
    // Two codes and one refresh token are real: each can be redeemed at most once.
    await fuzz('OAuth 2 token endpoint (random forms)', runs(200, 3000), arb, 3)
  }, FILE_TIMEOUT)

  it('mutated bytes of a valid form, and other content types: no 5xx, nothing minted from a broken code', async () => {
    await fuzz(
      'OAuth 2 token endpoint (mutated forms)',
      runs(200, 3000),
      mutationsArb({ tokens: ['&', '=', '%', '%ZZ', '%00', '&code=', '&grant_type=refresh_token', '+', '\u00e9'] }).map((mutations) => ({
        label: kinds(mutations),
        build: (real: { codes: string[]; refresh: string }) =>
          applyAll(Buffer.from(new URLSearchParams({ grant_type: 'authorization_code', code: real.codes[0]!, redirect_uri: APPLE_REDIRECT_URI, client_id: idp.clientId }).toString(), 'latin1'), mutations),
      })),
      // The one code in the valid form may still be redeemed by a harmless mutation (a trailing '&').
      1,
    )
    const x = tally('OAuth 2 token endpoint (other content types)')
    for (const [payload, type] of [
      ['{"grant_type":"authorization_code"}', 'application/json'],
      ['<x/>', 'text/xml'],
      ['grant_type=authorization_code', 'multipart/form-data; boundary=x'],
      ['grant_type=authorization_code', 'application/x-www-form-urlencoded; charset=utf-16'],
    ] as const) {
      const res = await classifyResponse(x, () => post(payload, type), () => type)
      expect(res?.statusCode).toBe(400)
      expectOAuthAnswer(res!)
    }
    expect(x.failures).toBe('')
  }, FILE_TIMEOUT)
})
