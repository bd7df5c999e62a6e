/**
 * The SAML assertion consumer (`POST /api/v1/mdm/sso/callback`) fuzzed through the real app with a real
 * IdP's signed responses (test/helpers/saml-idp.ts): SECURITY.md rows 13, 25 and 29 as a property.
 * Inputs are mutations of valid answers at three levels: the decoded XML (bytes and the tokens that
 * matter: DOCTYPE/entities, comments, extra assertions, namespace prefixes), the Base64 text, and the
 * raw form body (duplicated, missing and oversized fields). Every input is answered with a page in
 * bounded time, never a 5xx; a mutated response mints no token unless it still carries the IdP's
 * signature over the same assertion, and each started sign-in mints at most one.
 */
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildTestApp, type TestApp } from '../helpers/app.js'
import { createTestIdp, type TestIdp } from '../helpers/saml-idp.js'
import { CALLBACK_PATH, counts, idpAnswer } from '../helpers/sso.js'
import { applyAll, classifyResponse, FILE_TIMEOUT, kinds, mutationsArb, runs, Tally } from './fuzz.js'

let idp: TestIdp
let t: TestApp
const tallies: Record<string, Tally> = {}
const tally = (name: string) => (tallies[name] ??= new Tally())

beforeAll(async () => {
  idp = await createTestIdp()
  t = await buildTestApp({ env: { ...idp.env, SSO_RATE_LIMIT: '1000000' } })
}, 120_000)
afterAll(async () => {
  for (const [name, x] of Object.entries(tallies)) x.record(`fuzz: ${name}`, name in minted ? { 'tokens minted': minted[name]! } : {})
  await t?.close()
})

const minted: Record<string, number> = {}

const XML_TOKENS = [
  '<!DOCTYPE r [<!ENTITY e "eeeeeeeeee">]>',
  '<!DOCTYPE r SYSTEM "http://127.0.0.1:1/x.dtd">',
  '&e;',
  '<!-- x -->',
  '<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_evil"/>',
  ' xmlns:q="urn:q"',
  '<q:x xmlns:q="urn:q"/>',
  '<![CDATA[x]]>',
  '\u0000',
  '&#x0;',
]

function post(payload: string | Buffer) {
  return t.app.inject({ method: 'POST', url: CALLBACK_PATH, headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload })
}

async function freshAnswers(n: number) {
  return Promise.all(Array.from({ length: n }, () => idpAnswer(t.app, idp, { userIdentifier: 'alice@example.test' }).then((a) => a.form)))
}

async function fuzz(name: string, numRuns: number, arb: fc.Arbitrary<{ build: (forms: { SAMLResponse: string; RelayState: string }[]) => string | Buffer; label: string }>) {
  const x = tally(name)
  const forms = await freshAnswers(3)
  const before = await counts(t.app)
  await fc.assert(
    fc.asyncProperty(arb, async ({ build, label }) => {
      const payload = build(forms)
      const res = await classifyResponse(x, () => post(payload), () => `${label} ${String(payload).slice(0, 160)}`)
      if (res && res.statusCode >= 400 && res.statusCode < 500) expect(String(res.headers['content-type'])).toMatch(/^text\/html/)
      // Refusals name no internals: a sentence and the request id (row 29).
      if (res && res.statusCode >= 400) expect(res.body).not.toMatch(/Error:|at \w+ \(|stack|xmldom|SELECT/)
    }),
    { numRuns },
  )
  const after = await counts(t.app)
  minted[name] = after.tokens - before.tokens
  expect(x.failures).toBe('')
  // Only the three started sign-ins can mint, once each, and only what was accepted minted.
  expect(minted[name]).toBe(x.accepted)
  expect(x.accepted).toBeLessThanOrEqual(forms.length)
  expect(x.refused).toBeGreaterThan(x.inputs / 2)
}

describe('SAML assertion consumer', () => {
  it('mutated response XML: a page for each, no 5xx, no token from a broken signature', async () => {
    await fuzz(
      'SAML callback (response XML)',
      runs(200, 3000),
      fc.tuple(fc.nat(2), mutationsArb({ tokens: XML_TOKENS })).map(([which, mutations]) => ({
        label: kinds(mutations),
        build: (forms) => {
          const xml = applyAll(Buffer.from(forms[which]!.SAMLResponse, 'base64'), mutations)
          return new URLSearchParams({ SAMLResponse: xml.toString('base64'), RelayState: forms[which]!.RelayState }).toString()
        },
      })),
    )
  }, FILE_TIMEOUT)

  it('mutated Base64 text and form bodies: a page for each, no 5xx', async () => {
    await fuzz(
      'SAML callback (form body)',
      runs(200, 3000),
      fc.tuple(fc.nat(2), mutationsArb({ tokens: ['&', '=', '%', '%ZZ', '&SAMLResponse=', '&RelayState=', '+', '%00', 'SAMLResponse=' + 'A'.repeat(600_000)] })).map(([which, mutations]) => ({
        label: kinds(mutations),
        build: (forms) => applyAll(Buffer.from(new URLSearchParams(forms[which]!).toString(), 'latin1'), mutations),
      })),
    )
  }, FILE_TIMEOUT)

  it('the sign-in page query and the start endpoint JSON: a page or a JSON answer each, no 5xx, a stored request only for an accepted start', async () => {
    const page = tally('SSO page query')
    const start = tally('SSO start JSON')
    const identifier = fc.oneof(fc.emailAddress(), fc.string({ unit: 'grapheme', maxLength: 80 }), fc.string({ unit: 'binary', maxLength: 40 }), fc.constant(`${'a'.repeat(400)}@example.com`), fc.constant('<script>alert(1)</script>@example.com'))
    const token = fc.oneof(fc.constant(t.app.defaultTeam.enrollmentToken), fc.string({ maxLength: 40 }), fc.constant('x'.repeat(300)))
    const before = await t.app.db.prisma.samlAuthnRequest.count()
    await fc.assert(
      fc.asyncProperty(fc.option(identifier), fc.option(token), fc.oneof(fc.constant(undefined), fc.json({ maxDepth: 3 })), async (id, team, junk) => {
        const q = new URLSearchParams()
        if (id !== null) q.set('user-identifier', id)
        const url = team === null ? `/mdm/sso?${q}` : `/mdm/sso/${encodeURIComponent(team)}?${q}`
        const res = await classifyResponse(page, () => t.app.inject({ url }), () => url.slice(0, 200))
        // A path segment over the router's limit is refused before any route is chosen: 414 JSON (app.ts).
        if (res && res.statusCode < 500 && res.statusCode !== 414) expect(String(res.headers['content-type']), `${res.statusCode} ${url.slice(0, 120)}`).toMatch(/^text\/html/)
        // Whatever the page shows, typed input is escaped: no markup of ours comes back.
        if (res) expect(res.body).not.toContain('<script>alert(1)</script>')
        const body = junk ?? JSON.stringify({ enrollmentToken: team, userIdentifier: id })
        const answer = await classifyResponse(start, () => t.app.inject({ method: 'POST', url: '/api/v1/mdm/sso', headers: { 'content-type': 'application/json' }, payload: body }), () => body.slice(0, 200))
        if (answer && answer.statusCode < 500) expect(String(answer.headers['content-type'])).toMatch(/^application\/json/)
      }),
      { numRuns: runs(200, 3000) },
    )
    expect(page.failures).toBe('')
    expect(start.failures).toBe('')
    // Each accepted start stored one AuthnRequest; refusals stored nothing.
    expect((await t.app.db.prisma.samlAuthnRequest.count()) - before).toBe(start.accepted)
  }, FILE_TIMEOUT)
})
