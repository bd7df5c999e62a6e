/**
 * SECURITY.md rows 13 and 14 against the assertion consumer, with responses built by a real IdP
 * (samlify) and then bent: every refusal is a 4xx HTML page, mints nothing, and logs the real reason.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { buildTestApp, type TestApp } from '../../helpers/app.js'
import { fastestOfEach, namespacePerLevel, timed } from '../../helpers/hostile-xml.js'
import { createTestIdp, editResponse, generateIdpKeys, type ResponseOptions, type TestIdp } from '../../helpers/saml-idp.js'
import { counts, expectErrorPage, idpAnswer, postCallback, spFromMetadata, startSignIn, tokenFrom } from '../../helpers/sso.js'

// Some tests here start extra app instances (a database, migrations, keys each): slow on a busy machine.
vi.setConfig({ testTimeout: 90_000 })

let idp: TestIdp
let t: TestApp
beforeAll(async () => {
  idp = await createTestIdp()
  t = await buildTestApp({ env: { ...idp.env, SSO_RATE_LIMIT: '10000' } })
})
afterAll(async () => t?.close())

type Res = Awaited<ReturnType<typeof postCallback>>

/** The reason logged for a request (the log has it; the page does not). */
function loggedReason(app: TestApp, res: Res): string {
  const id = String(res.headers['x-request-id'])
  const line = app.logs().find((l) => l.reqId === id && l.msg === 'request rejected') as { reason?: { message?: string } } | undefined
  return line?.reason?.message ?? ''
}

async function expectRefused(form: Record<string, string>, status: number, reason: RegExp, app: TestApp = t): Promise<Res> {
  const before = await counts(app.app)
  const res = await postCallback(app.app, form)
  expectErrorPage(res, status)
  expect(loggedReason(app, res)).toMatch(reason)
  expect(await counts(app.app)).toEqual(before)
  return res
}

const answer = (options?: ResponseOptions, app: TestApp = t) => idpAnswer(app.app, idp, { userIdentifier: 'alice@example.test' }, options)

describe('signatures (row 13)', () => {
  it('refuses a response with no signature at all', async () => {
    const { form } = await answer({ signAssertion: false, signResponse: false })
    await expectRefused(form, 400, /signature/i)
  })

  it('refuses a signed response whose assertion is not signed', async () => {
    const { form } = await answer({ signAssertion: false, signResponse: true })
    await expectRefused(form, 400, /Invalid signature/)
  })

  it('refuses an unsigned response around a signed assertion while SAML_WANT_RESPONSE_SIGNED is on, accepts it when off', async () => {
    const { form } = await answer({ signAssertion: true, signResponse: false })
    await expectRefused(form, 400, /Invalid document signature/)
    const lenient = await buildTestApp({ env: { ...idp.env, SAML_WANT_RESPONSE_SIGNED: 'false' } })
    try {
      const ok = await answer({ signAssertion: true, signResponse: false }, lenient)
      tokenFrom(await postCallback(lenient.app, ok.form))
      // Even then an unsigned assertion is never enough.
      const bad = await answer({ signAssertion: false, signResponse: false }, lenient)
      await expectRefused(bad.form, 400, /signature/i, lenient)
    } finally {
      await lenient.close()
    }
  })

  it('refuses a response signed with a key that is not the IdP’s', async () => {
    const { form } = await answer({ signWith: await generateIdpKeys('Mallory') })
    await expectRefused(form, 400, /signature/i)
  })

  it('refuses a signed assertion changed after signing', async () => {
    const { form } = await answer({ nameId: 'mallory@example.test', signResponse: false })
    const tampered = editResponse(form.SAMLResponse, (xml) => xml.replace('mallory@example.test', 'alice@example.test'))
    await expectRefused({ ...form, SAMLResponse: tampered }, 400, /signature/i)
  })

  it('refuses a comment inside the NameID, which keeps the signature valid but changes what naive readers see', async () => {
    const { form } = await answer({ nameId: 'alice@example.test.evil.test' })
    const commented = editResponse(form.SAMLResponse, (xml) => xml.replace('alice@example.test.evil.test<', 'alice@example.test<!---->.evil.test<'))
    expect(commented).not.toBe(form.SAMLResponse)
    await expectRefused({ ...form, SAMLResponse: commented }, 400, /comments are not accepted/)
  })
})

describe('signature wrapping (row 13)', () => {
  const ASSERTION = /<saml:Assertion\b[\s\S]*<\/saml:Assertion>/

  /** An unsigned assertion naming someone else, made from the signed one. */
  function evil(xml: string): string {
    return ASSERTION.exec(xml)![0]
      .replace(/<ds:Signature[\s\S]*?<\/ds:Signature>/, '')
      .replace(/ID="[^"]+"/, 'ID="_evil"')
      .replace(/>[^<]+<\/saml:NameID>/, '>ceo@example.test</saml:NameID>')
  }

  it('refuses a second, unsigned assertion next to the signed one (before or after it)', async () => {
    for (const place of ['before', 'after'] as const) {
      const { form } = await answer()
      const wrapped = editResponse(form.SAMLResponse, (xml) => {
        const signed = ASSERTION.exec(xml)![0]
        return xml.replace(signed, place === 'before' ? evil(xml) + signed : signed + evil(xml))
      })
      await expectRefused({ ...form, SAMLResponse: wrapped }, 400, /exactly one Assertion/)
    }
  })

  it('refuses the signed assertion hidden inside Extensions or an evil assertion’s Advice', async () => {
    const { form } = await answer({ signResponse: false })
    const inExtensions = editResponse(form.SAMLResponse, (xml) => {
      const signed = ASSERTION.exec(xml)![0]
      return xml.replace(signed, evil(xml)).replace('<samlp:Status>', `<samlp:Extensions>${signed}</samlp:Extensions><samlp:Status>`)
    })
    await expectRefused({ ...form, SAMLResponse: inExtensions }, 400, /exactly one Assertion/)

    const second = await answer({ signResponse: false })
    const inAdvice = editResponse(second.form.SAMLResponse, (xml) => {
      const signed = ASSERTION.exec(xml)![0]
      return xml.replace(signed, evil(xml).replace('<saml:Conditions', `<saml:Advice>${signed}</saml:Advice><saml:Conditions`))
    })
    await expectRefused({ ...second.form, SAMLResponse: inAdvice }, 400, /exactly one Assertion/)
  })

  it('refuses an unsigned assertion that reuses the signed one’s ID', async () => {
    const { form } = await answer({ signResponse: false })
    const sameId = editResponse(form.SAMLResponse, (xml) => {
      const signed = ASSERTION.exec(xml)![0]
      const id = /ID="([^"]+)"/.exec(signed)![1]!
      return xml.replace(signed, evil(xml).replace('ID="_evil"', `ID="${id}"`))
    })
    await expectRefused({ ...form, SAMLResponse: sameId }, 400, /signature/i)
  })
})

describe('conditions and binding (row 13)', () => {
  it('refuses a wrong Audience', async () => {
    const { form } = await answer({ audience: 'https://other-sp.example.test/metadata' })
    await expectRefused(form, 400, /audience mismatch/)
  })

  it('refuses a wrong Destination', async () => {
    const { form } = await answer({ destination: 'https://other-sp.example.test/acs' })
    await expectRefused(form, 400, /Destination/)
  })

  it('refuses a wrong Recipient in the bearer confirmation', async () => {
    const { form } = await answer({ recipient: 'https://other-sp.example.test/acs' })
    await expectRefused(form, 400, /Recipient/)
  })

  it('refuses an assertion from another issuer, even signed with the configured key', async () => {
    const { form } = await answer({ issuer: 'https://other-idp.example.test' })
    await expectRefused(form, 400, /Issuer/)
  })

  it('refuses an expired assertion, and accepts one inside the clock skew (SAML_CLOCK_SKEW, 60 s)', async () => {
    const past = { notBefore: new Date(Date.now() - 600_000), notOnOrAfter: new Date(Date.now() - 120_000) }
    const { form } = await answer({ ...past, subjectNotOnOrAfter: new Date(Date.now() + 120_000) })
    await expectRefused(form, 400, /expired/)
    // The bearer confirmation expired too: no confirmation is usable.
    const both = await answer(past)
    await expectRefused(both.form, 400, /No valid subject confirmation/)
    const skewed = await answer({ notBefore: new Date(Date.now() - 600_000), notOnOrAfter: new Date(Date.now() - 20_000) })
    tokenFrom(await postCallback(t.app, skewed.form))
  })

  it('refuses an assertion whose NotBefore is in the future, and accepts one inside the clock skew', async () => {
    const { form } = await answer({ notBefore: new Date(Date.now() + 300_000), notOnOrAfter: new Date(Date.now() + 600_000) })
    await expectRefused(form, 400, /not yet valid/)
    const skewed = await answer({ notBefore: new Date(Date.now() + 20_000), notOnOrAfter: new Date(Date.now() + 600_000) })
    tokenFrom(await postCallback(t.app, skewed.form))
  })

  it('refuses an IdP status other than Success', async () => {
    const { form } = await answer({ statusCode: 'urn:oasis:names:tc:SAML:2.0:status:Requester' })
    const res = await expectRefused(form, 400, /status urn:oasis:names:tc:SAML:2.0:status:Requester/)
    expect(res.body).toContain('did not complete the sign-in')
  })
})

describe('InResponseTo and replay (rows 13 and 14)', () => {
  it('refuses an unknown InResponseTo', async () => {
    const sp = await spFromMetadata(t.app)
    const SAMLResponse = await idp.respond({ id: '_0123456789abcdef0123456789abcdef01234567' }, sp)
    const res = await expectRefused({ SAMLResponse, RelayState: 'x' }, 400, /names no pending request/)
    expect(res.body).toContain('expired or was already used')
  })

  it('refuses an IdP-initiated response (no InResponseTo)', async () => {
    const sp = await spFromMetadata(t.app)
    const SAMLResponse = await idp.respond({ id: 'unused' }, sp, { inResponseTo: null })
    expect(Buffer.from(SAMLResponse, 'base64').toString()).not.toContain('InResponseTo')
    await expectRefused({ SAMLResponse }, 400, /IdP-initiated/)
  })

  it('refuses a SubjectConfirmation InResponseTo that differs from the Response’s', async () => {
    const other = await answer()
    const { form } = await answer({ subjectInResponseTo: other.request.id })
    await expectRefused(form, 400, /InResponseTo does not match/)
  })

  it('refuses a request that expired before the response came back', async () => {
    const { form, request } = await answer()
    await t.app.db.prisma.samlAuthnRequest.update({ where: { requestId: request.id }, data: { expiresAt: new Date(Date.now() - 1000) } })
    await expectRefused(form, 400, /names no pending request/)
  })

  it('refuses a RelayState that is not the one sent with the request', async () => {
    const { form } = await answer()
    await expectRefused({ ...form, RelayState: 'forged' }, 400, /RelayState/)
  })

  it('spends the request on a refused response: a good response for it is refused afterwards', async () => {
    const { form, request, sp } = await answer({ audience: 'https://wrong.example.test' })
    await expectRefused(form, 400, /audience/)
    const good = await idp.respond(request, sp)
    await expectRefused({ SAMLResponse: good, RelayState: request.relayState }, 400, /names no pending request/)
  })

  it('accepts the same SAMLResponse once when posted twice in a row', async () => {
    const { form } = await answer()
    const before = await counts(t.app)
    tokenFrom(await postCallback(t.app, form))
    const again = await postCallback(t.app, form)
    expectErrorPage(again, 400)
    expect((await counts(t.app)).tokens).toBe(before.tokens + 1)
  })

  it('accepts the same SAMLResponse exactly once when posted concurrently', async () => {
    const { form } = await answer()
    const before = await counts(t.app)
    const results = await Promise.all(Array.from({ length: 8 }, () => postCallback(t.app, form)))
    expect(results.map((r) => r.statusCode).sort()).toEqual([308, 400, 400, 400, 400, 400, 400, 400])
    expect((await counts(t.app)).tokens).toBe(before.tokens + 1)
  })

  it('accepts an assertion ID once, even in a response to another request', async () => {
    const first = await answer({ assertionId: '_assertion-reused-by-the-idp' })
    tokenFrom(await postCallback(t.app, first.form))
    const second = await answer({ assertionId: '_assertion-reused-by-the-idp' })
    await expectRefused(second.form, 400, /accepted before/)
  })
})

describe('hostile input to the assertion consumer', () => {
  it('answers 4xx pages for missing, malformed and oversized responses, writing nothing', async () => {
    const before = await counts(t.app)
    expectErrorPage(await postCallback(t.app, {}), 400)
    expectErrorPage(await postCallback(t.app, { SAMLResponse: '!!!not base64!!!' }), 400)
    expectErrorPage(await postCallback(t.app, { SAMLResponse: Buffer.from('not xml at all').toString('base64') }), 400)
    const xxe = '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol">&x;</samlp:Response>'
    const res = await postCallback(t.app, { SAMLResponse: Buffer.from(xxe).toString('base64') })
    expectErrorPage(res, 400)
    expect(loggedReason(t, res)).toMatch(/DOCTYPE/)
    expectErrorPage(await postCallback(t.app, { SAMLResponse: 'A'.repeat(600 * 1024) }), 413)
    const twice = await t.app.inject({
      method: 'POST',
      url: '/api/v1/mdm/sso/callback',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: 'SAMLResponse=AAAA&SAMLResponse=BBBB',
    })
    expectErrorPage(twice, 400)
    expect(await counts(t.app)).toEqual(before)
  })

  it('refuses a ~190 KB response nesting a new namespace per level in at most 5x the time of a normal response of that size, /healthz answered meanwhile (row 25)', async () => {
    // Posted by anyone, before any sign-in. The normal case of the same size: a signed response from
    // the IdP whose user is in 2,000 groups, accepted (the limits leave room for it)...
    const groups = Array.from({ length: 2_000 }, (_v, i) => `engineering-group-${String(i).padStart(5, '0')}`)
    const { form } = await answer({ attributes: { groups } })
    expect(Buffer.from(form.SAMLResponse, 'base64').length).toBeGreaterThan(150_000)
    tokenFrom(await postCallback(t.app, form))
    // ...and, as the reference for time, the same response sent to another Destination: read whole and
    // refused at the step the hostile one is refused at (what an attacker without a signature gets).
    const forged = { ...form, SAMLResponse: editResponse(form.SAMLResponse, (xml) => xml.replace(/ Destination="[^"]*"/, ' Destination="https://elsewhere.example/acs"')) }
    await expectRefused(forged, 400, /Destination/)

    const envelope = (inner: string) => `<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol">${inner}</samlp:Response>`
    const bomb = { SAMLResponse: Buffer.from(envelope(namespacePerLevel(190_000 - envelope('').length))).toString('base64') }
    expect(bomb.SAMLResponse.length).toBeLessThanOrEqual(256 * 1024)
    const refused = await expectRefused(bomb, 400, /namespaces|nested deeper/)
    expect(refused.body).not.toContain('xmlns:p1')

    const [reference, took] = await fastestOfEach(
      3,
      async () => expectErrorPage(await postCallback(t.app, forged), 400),
      async () => expectErrorPage(await postCallback(t.app, bomb), 400),
    )
    expect(took, `${took.toFixed(0)} ms, normal ${reference.toFixed(0)} ms`).toBeLessThanOrEqual(5 * reference)
    expect(took).toBeLessThan(2000)

    // /healthz asked again and again while the response is refused, each time from a timer (which a
    // blocked event loop delays) to the answer.
    let done = false
    let worstHealthz = 0
    let probes = 0
    const probe = (async () => {
      do {
        const took = await timed(async () => {
          await new Promise((resolve) => setTimeout(resolve, 1))
          expect((await t.app.inject('/healthz')).statusCode).toBe(200)
        })
        worstHealthz = Math.max(worstHealthz, took)
        probes++
      } while (!done)
    })()
    expectErrorPage(await postCallback(t.app, bomb), 400)
    done = true
    await probe
    expect(probes).toBeGreaterThan(0)
    expect(worstHealthz, `/healthz took ${worstHealthz.toFixed(0)} ms, the normal response ${reference.toFixed(0)} ms`).toBeLessThanOrEqual(5 * reference)
    expect(worstHealthz).toBeLessThan(2000)
  })

  it('answers the start endpoint’s bad input with JSON 4xx and stores no request', async () => {
    const requests = await t.app.db.prisma.samlAuthnRequest.count()
    const post = (payload: unknown) => t.app.inject({ method: 'POST', url: '/api/v1/mdm/sso', payload: payload as object })
    const unknownTeam = await post({ enrollmentToken: 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' })
    expect(unknownTeam.statusCode).toBe(404)
    expect(unknownTeam.json()).toEqual({ error: 'unknown_team', message: expect.stringContaining('not valid') })
    expect((await post({ userIdentifier: 'x'.repeat(1000) })).statusCode).toBe(400)
    expect((await post({ surprise: true })).statusCode).toBe(400)
    expect((await post({ enrollmentToken: 42 })).statusCode).toBe(400)
    expect(await t.app.db.prisma.samlAuthnRequest.count()).toBe(requests)
    await startSignIn(t.app, {})
    expect(await t.app.db.prisma.samlAuthnRequest.count()).toBe(requests + 1)
  })
})
