/**
 * Account-driven enrollment from the device's point of view, through web sign-in (PROTOCOL.md sections
 * 2-3): enroll without a token -> 401 apple-as-web challenge -> the SSO page (with user-identifier
 * appended, as the device does) -> the IdP -> 308 with a token -> enroll again with that token -> the
 * signed profile naming the user's Managed Apple Account.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PLATFORMS } from '../../src/protocol/platform.js'
import { profileErrors } from '../../src/protocol/profile-rules.js'
import { buildTestApp, type TestApp } from '../helpers/app.js'
import { createTestIdp, type TestIdp } from '../helpers/saml-idp.js'
import { payloadOf, postEnroll, verifyProfile } from '../helpers/enroll.js'
import { postCallback, spFromMetadata, startSignIn, tokenFrom } from '../helpers/sso.js'

let idp: TestIdp
let t: TestApp
beforeAll(async () => {
  idp = await createTestIdp()
  t = await buildTestApp({ env: { ...idp.env, SSO_REQUIRE_IDENTIFIER_MATCH: 'true', SSO_RATE_LIMIT: '1000' } })
})
afterAll(async () => t?.close())

/** What the device does with a 401: read the apple-as-web URL and open it with user-identifier. */
function challengeUrl(res: { statusCode: number; headers: Record<string, unknown> }): URL {
  expect(res.statusCode).toBe(401)
  const header = String(res.headers['www-authenticate'])
  expect(header).toMatch(/^Bearer /)
  expect(header).toContain('method="apple-as-web"')
  return new URL(/url="([^"]+)"/.exec(header)![1]!)
}

describe('enrollment through SAML web sign-in', () => {
  for (const path of ['/api/mdm/apple/enroll', 'team']) {
    it(`ends with a signed profile for the signed-in user (${path === 'team' ? 'team enroll URL' : 'Default team'})`, async () => {
      const { app } = t
      const enrollPath = path === 'team' ? new URL(app.urls.enroll(app.defaultTeam.enrollmentToken)).pathname : path
      const sso = challengeUrl(await postEnroll(app, { path: enrollPath }))
      sso.searchParams.set('user-identifier', 'Alice@Example.test')

      const page = await app.inject(sso.pathname + sso.search)
      expect(page.statusCode).toBe(200)
      const data = (name: string) => new RegExp(`data-${name}="([^"]*)"`).exec(page.body)![1]!
      const url = await startSignIn(app, { enrollmentToken: data('enrollment-token') || null, userIdentifier: data('user-identifier') || null })

      const sp = await spFromMetadata(app)
      const request = await idp.readRequest(url, sp.metadata)
      const SAMLResponse = await idp.respond(request, sp, { nameId: 'alice@example.test' })
      const token = tokenFrom(await postCallback(app, { SAMLResponse, RelayState: request.relayState }))

      const enrolled = await postEnroll(app, { path: enrollPath, token })
      expect(enrolled.statusCode, enrolled.body).toBe(200)
      expect(enrolled.headers['content-type']).toBe('application/x-apple-aspen-config')
      const profile = verifyProfile(app, enrolled.rawPayload)
      const mdm = payloadOf(profile, 'com.apple.mdm')
      expect(String(mdm.AssignedManagedAppleID).toLowerCase()).toBe('alice@example.test')
      expect(mdm.EnrollmentMode).toBe('BYOD')
      // The served profile obeys Apple's schema for user enrollment on every account-driven platform.
      for (const platform of PLATFORMS) expect(profileErrors(profile, { platform, enrollment: 'user' }), platform).toEqual([])
    })
  }

  it('gives a token for one team that another team’s enroll URL does not accept', async () => {
    const { app } = t
    const other = await app.db.prisma.team.create({ data: { name: 'Other', enrollmentToken: `other-${Date.now()}-abcdefghijklmnop` } })
    const sp = await spFromMetadata(app)
    const request = await idp.readRequest(await startSignIn(app, { enrollmentToken: other.enrollmentToken, userIdentifier: 'bob@example.test' }), sp.metadata)
    const token = tokenFrom(await postCallback(app, { SAMLResponse: await idp.respond(request, sp, { nameId: 'bob@example.test' }), RelayState: request.relayState }))
    expect((await postEnroll(app, { token })).statusCode).toBe(401)
    expect((await postEnroll(app, { token, path: new URL(app.urls.enroll(other.enrollmentToken)).pathname })).statusCode).toBe(200)
  })
})
