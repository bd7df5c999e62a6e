/**
 * SAML web sign-in end to end through the real app and a real IdP (samlify, own keys): the page, the
 * start endpoint, the AuthnRequest as the IdP reads it, the signed Response posted back, and the 308
 * carrying a token the enroll endpoint accepts.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { checkTokenForEnrollment } from '../../../src/services/tokens.js'
import { newEnrollmentToken } from '../../../src/storage/teams.js'
import { generateIdpKeys, createTestIdp, type TestIdp } from '../../helpers/saml-idp.js'
import { buildTestApp, type TestApp } from '../../helpers/app.js'
import { createTestDatabase } from '../../helpers/database.js'
import { counts, expectErrorPage, idpAnswer, postCallback, spFromMetadata, startSignIn, tokenFrom, tokenRecord } from '../../helpers/sso.js'

// Some tests here start extra app instances (a database, migrations, keys each): slow on a busy machine.
vi.setConfig({ testTimeout: 90_000 })

let idp: TestIdp
let t: TestApp
beforeAll(async () => {
  idp = await createTestIdp()
  t = await buildTestApp({
    env: { ...idp.env, SAML_EMAIL_ATTRIBUTE: 'email', SAML_NAME_ATTRIBUTE: 'displayName', SAML_GROUPS_ATTRIBUTE: 'groups', SSO_RATE_LIMIT: '10000' },
  })
})
afterAll(async () => t?.close())

describe('SAML sign-in', () => {
  it('starts at the page, goes through the IdP and ends with a 308 carrying a token valid for enrollment', async () => {
    const { app } = t
    const page = await app.inject(`/mdm/sso?user-identifier=${encodeURIComponent('Alice@Example.test')}`)
    expect(page.statusCode).toBe(200)
    expect(page.body).toContain('Example Corp')
    expect(page.body).toContain('Alice@Example.test')
    // The page's script calls the start URL given in the page; a device follows it the same way.
    const startUrl = /data-start-url="([^"]+)"/.exec(page.body)![1]!
    expect(startUrl).toBe(app.urls.ssoStart)

    const { request, form } = await idpAnswer(app, idp, { userIdentifier: 'Alice@Example.test' }, {
      nameId: 'alice-persistent-id',
      attributes: { email: 'alice@example.test', displayName: 'Alice Liddell', groups: ['staff', 'mdm-users'] },
    })
    expect(request.destination).toBe(idp.ssoUrl)
    expect(request.acsUrl).toBe(app.urls.ssoCallback)
    expect(request.relayState).not.toBe('')
    const res = await postCallback(app, form)
    const token = tokenFrom(res)
    expect(res.headers['cache-control']).toBe('no-store')

    const record = await tokenRecord(app, token)
    expect(checkTokenForEnrollment(record, app.defaultTeam.id)).toBeNull()
    expect(record.method).toBe('saml')
    expect(record.userIdentifier).toBe('Alice@Example.test')
    expect(record.user).toMatchObject({ issuer: idp.entityId, subject: 'alice-persistent-id', email: 'alice@example.test', displayName: 'Alice Liddell', groups: ['staff', 'mdm-users'] })
    // The request is spent; the assertion is remembered until it expires.
    const stored = await app.db.prisma.samlAuthnRequest.findUnique({ where: { requestId: request.id } })
    expect(stored?.consumedAt).toBeInstanceOf(Date)
    expect(stored?.teamId).toBe(app.defaultTeam.id)
    expect(await app.db.prisma.samlAssertion.count({ where: { issuer: idp.entityId } })).toBeGreaterThan(0)
  })

  it('mints the token for the team whose enrollment URL the device used', async () => {
    const { app } = t
    const team = await app.db.prisma.team.create({ data: { name: 'Engineering', enrollmentToken: newEnrollmentToken() } })
    const page = await app.inject(`/mdm/sso/${team.enrollmentToken}?user-identifier=bob@example.test`)
    expect(page.statusCode).toBe(200)
    expect(page.body).toContain(`data-enrollment-token="${team.enrollmentToken}"`)
    const { form } = await idpAnswer(app, idp, { enrollmentToken: team.enrollmentToken, userIdentifier: 'bob@example.test' }, { nameId: 'bob@example.test' })
    const record = await tokenRecord(app, tokenFrom(await postCallback(app, form)))
    expect(checkTokenForEnrollment(record, team.id)).toBeNull()
    expect(checkTokenForEnrollment(record, app.defaultTeam.id)).toBe('other_team')
  })

  it('finishes on a second server process a sign-in the first one started (state in the database)', async () => {
    const database = await createTestDatabase()
    const a = await buildTestApp({ database, env: idp.env })
    const b = await buildTestApp({ database, env: idp.env })
    try {
      const { form, request } = await idpAnswer(a.app, idp, { userIdentifier: 'carol@example.test' }, { nameId: 'carol@example.test' })
      const record = await tokenRecord(b.app, tokenFrom(await postCallback(b.app, form)))
      expect(record.userIdentifier).toBe('carol@example.test')
      expect(checkTokenForEnrollment(record, b.app.defaultTeam.id)).toBeNull()
      // Posting it again on the first process is refused: the request was consumed in the shared table.
      expectErrorPage(await postCallback(a.app, form), 400)
      expect(await a.app.db.prisma.samlAuthnRequest.count({ where: { requestId: request.id, consumedAt: { not: null } } })).toBe(1)
    } finally {
      await a.close()
      await b.close()
      await database.drop()
    }
  })
})

describe('SP metadata and AuthnRequests', () => {
  it('publishes SP metadata with the assertion consumer URL and signed assertions required', async () => {
    const res = await t.app.inject('/api/v1/mdm/sso/metadata')
    expect(res.headers['content-type']).toMatch(/^application\/samlmetadata\+xml/)
    expect(res.body).toContain('WantAssertionsSigned="true"')
    const sp = await spFromMetadata(t.app)
    expect(sp.acsUrl).toBe(t.app.urls.ssoCallback)
    expect(sp.entityId).toBe(t.config.sso.saml!.spEntityId)
  })

  it('signs AuthnRequests when SAML_SP_CERT/SAML_SP_KEY are set, and the IdP verifies them', async () => {
    const spKeys = await generateIdpKeys('SP signing')
    const other = await generateIdpKeys('Someone else')
    const s = await buildTestApp({ env: { ...idp.env, SAML_SP_CERT: spKeys.certificatePem, SAML_SP_KEY: spKeys.privateKeyPem } })
    try {
      const sp = await spFromMetadata(s.app)
      expect(sp.metadata).toContain('AuthnRequestsSigned="true"')
      const url = await startSignIn(s.app, { userIdentifier: 'dave@example.test' })
      const request = await idp.readRequest(url, sp.metadata)
      expect(request.signed).toBe(true)
      expect(new URL(url).searchParams.get('SigAlg')).toBe('http://www.w3.org/2001/04/xmldsig-more#rsa-sha256')
      // The same request checked against a different SP certificate fails: the signature is real.
      const forged = sp.metadata.replace(/<ds:X509Certificate>[^<]+</, `<ds:X509Certificate>${other.certificatePem.replace(/-----[^-]+-----|\s/g, '')}<`)
      await expect(idp.readRequest(url, forged)).rejects.toThrow('ERR_FAILED_MESSAGE_SIGNATURE_VERIFICATION')
      const record = await tokenRecord(s.app, tokenFrom(await postCallback(s.app, { SAMLResponse: await idp.respond(request, sp), RelayState: request.relayState })))
      expect(record.userIdentifier).toBe('dave@example.test')
    } finally {
      await s.close()
    }
  })
})

describe('sign-in policy', () => {
  it('SSO_REQUIRE_IDENTIFIER_MATCH refuses a user who signed in as someone else than typed on the device', async () => {
    const s = await buildTestApp({ env: { ...idp.env, SSO_REQUIRE_IDENTIFIER_MATCH: 'true' } })
    try {
      const before = await counts(s.app)
      const wrong = await idpAnswer(s.app, idp, { userIdentifier: 'erin@example.test' }, { nameId: 'mallory@example.test' })
      const res = await postCallback(s.app, wrong.form)
      expectErrorPage(res, 403)
      expect(res.body).toContain('different account')
      expect(await counts(s.app)).toEqual(before)
      const line = s.logLines.find((l) => l.includes('SSO_REQUIRE_IDENTIFIER_MATCH'))
      expect(line).toContain(String(res.headers['x-request-id']))

      const right = await idpAnswer(s.app, idp, { userIdentifier: 'Erin@Example.TEST' }, { nameId: 'erin@example.test' })
      tokenFrom(await postCallback(s.app, right.form))
    } finally {
      await s.close()
    }
  })

  it('SSO_TEAM_GROUPS lets only members of the listed groups enroll into a team', async () => {
    const s = await buildTestApp({ env: { ...idp.env, SAML_GROUPS_ATTRIBUTE: 'groups', SSO_TEAM_GROUPS: '{"Default": ["mdm-users", "admins"]}' } })
    try {
      const outsider = await idpAnswer(s.app, idp, { userIdentifier: 'frank@example.test' }, { nameId: 'frank@example.test', attributes: { groups: ['staff'] } })
      const before = await counts(s.app)
      const res = await postCallback(s.app, outsider.form)
      expectErrorPage(res, 403)
      expect(await counts(s.app)).toEqual(before)
      const member = await idpAnswer(s.app, idp, { userIdentifier: 'grace@example.test' }, { nameId: 'grace@example.test', attributes: { groups: ['staff', 'admins'] } })
      tokenFrom(await postCallback(s.app, member.form))
      // A team that is not listed is open to every signed-in user.
      const team = await s.app.db.prisma.team.create({ data: { name: 'Open', enrollmentToken: newEnrollmentToken() } })
      const open = await idpAnswer(s.app, idp, { enrollmentToken: team.enrollmentToken }, { nameId: 'frank@example.test', attributes: { groups: ['staff'] } })
      tokenFrom(await postCallback(s.app, open.form))
    } finally {
      await s.close()
    }
  })
})
