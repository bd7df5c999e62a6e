/**
 * The enroll endpoint through the real app and database: the recorded iPhone body, tokens minted as
 * sign-in would mint them, the profile checked by `openssl cms -verify` and then key by key.
 */
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { signCms } from '../../../src/pki/cms.js'
import { createSelfSigned, generateRsaKeyPair } from '../../../src/pki/x509.js'
import { isDict, type PlistDict } from '../../../src/protocol/plist.js'
import { newEnrollmentToken } from '../../../src/storage/teams.js'
import { buildTestApp, type TestApp } from '../../helpers/app.js'
import { enrollBody, payloadOf, postEnroll, signIn, verifyProfile, writtenRows } from '../../helpers/enroll.js'

const TOPIC = 'com.apple.mgmt.External.5b1a8c0e-2f4e-4d1b-9a57-0c3d2e1f4a6b'
const UUID = /^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$/
const tmp = mkdtempSync(path.join(tmpdir(), 'enroll-ca-'))

let t: TestApp
beforeAll(async () => {
  t = await buildTestApp({ env: { APNS_TOPIC: TOPIC } })
})
afterAll(async () => t.close())

async function defaultTeamToken(app = t.app) {
  return (await app.db.prisma.team.findFirstOrThrow({ where: { isDefault: true } })).enrollmentToken
}

describe('without a valid token', () => {
  it('answers the real device body with 401, an empty body and exactly the apple-as-web challenge', async () => {
    const res = await postEnroll(t.app)
    expect(res.statusCode).toBe(401)
    expect(res.body).toBe('')
    expect(res.headers['content-length']).toBe('0')
    expect(res.headers['www-authenticate']).toBe(`Bearer method="apple-as-web", url="https://mdm.example.test/mdm/sso/${await defaultTeamToken()}"`)
    // The team URL discovery hands out gives the same challenge.
    const viaTeamUrl = await postEnroll(t.app, { path: `/api/mdm/apple/enroll/${await defaultTeamToken()}` })
    expect(viaTeamUrl.headers['www-authenticate']).toBe(res.headers['www-authenticate'])
  })

  it('accepts any Content-Type, including the form type iOS 15 sent, and none', async () => {
    for (const contentType of ['application/pkcs7-signature', 'application/x-www-form-urlencoded', 'application/json', 'text/plain', null]) {
      const res = await postEnroll(t.app, { contentType })
      expect(res.statusCode, String(contentType)).toBe(401)
    }
  })

  it('challenges with the sign-in URL of the team in the path, and 404s an unknown team', async () => {
    const team = await t.app.db.prisma.team.create({ data: { name: 'Path team', enrollmentToken: newEnrollmentToken() } })
    const res = await postEnroll(t.app, { path: `/api/mdm/apple/enroll/${team.enrollmentToken}` })
    expect(res.statusCode).toBe(401)
    expect(res.headers['www-authenticate']).toBe(`Bearer method="apple-as-web", url="https://mdm.example.test/mdm/sso/${team.enrollmentToken}"`)
    const unknown = await postEnroll(t.app, { path: `/api/mdm/apple/enroll/${newEnrollmentToken()}` })
    expect(unknown.statusCode).toBe(404)
    expect(unknown.json()).toMatchObject({ error: 'not_found' })
  })

  it('challenges again for expired, consumed, revoked, foreign-team, garbage and non-bearer credentials, writing nothing', async () => {
    const prisma = t.app.db.prisma
    const other = await prisma.team.create({ data: { name: 'Other', enrollmentToken: newEnrollmentToken() } })
    const expired = await signIn(t.app, { windowSeconds: -1 })
    const consumed = await signIn(t.app)
    expect((await postEnroll(t.app, { token: consumed.token })).statusCode).toBe(200)
    const revoked = await signIn(t.app)
    await prisma.accessToken.update({ where: { id: revoked.tokenId }, data: { revokedAt: new Date() } })
    const foreign = await signIn(t.app, { team: other })
    const inactive = await signIn(t.app)
    await prisma.user.update({ where: { id: inactive.userId }, data: { active: false } })
    const ownTeam = await signIn(t.app)

    const before = await writtenRows(t.app)
    const cases: [string, { token?: string; authorization?: string; path?: string }][] = [
      ['enrollment_window_over', { token: expired.token }],
      ['profile_already_issued', { token: consumed.token }],
      ['revoked', { token: revoked.token }],
      ['other_team', { token: foreign.token }],
      ['other_team', { token: ownTeam.token, path: `/api/mdm/apple/enroll/${other.enrollmentToken}` }],
      ['user_inactive', { token: inactive.token }],
      ['unknown', { token: 'garbage-token-that-was-never-issued' }],
      ['no_token', { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` }],
    ]
    for (const [reason, c] of cases) {
      const headers: Record<string, string> = { 'content-type': 'application/pkcs7-signature' }
      if (c.token) headers.authorization = `Bearer ${c.token}`
      if (c.authorization) headers.authorization = c.authorization
      const res = await t.app.inject({ method: 'POST', url: c.path ?? '/api/mdm/apple/enroll', headers, payload: enrollBody })
      expect(res.statusCode, reason).toBe(401)
      expect(res.body, reason).toBe('')
      expect(res.headers['www-authenticate'], reason).toMatch(/^Bearer method="apple-as-web", url="https:\/\/mdm\.example\.test\/mdm\/sso\/[A-Za-z0-9_-]+"$/)
      const line = t.logs().findLast((l) => l.msg === 'enroll: sign-in required')
      expect(line?.reason, reason).toBe(reason)
    }
    expect(await writtenRows(t.app)).toEqual(before)
    // The foreign team's own URL still works for its token: the refusal was about the team, not the token.
    expect((await postEnroll(t.app, { token: foreign.token, path: `/api/mdm/apple/enroll/${other.enrollmentToken}` })).statusCode).toBe(200)
  })
})

describe('with a valid token', () => {
  it('issues a profile that openssl verifies against the signing certificate, with exactly the BYOD keys', async () => {
    const prisma = t.app.db.prisma
    const { token, tokenId, userId } = await signIn(t.app, { email: 'alice@example.com', userIdentifier: 'Alice@Example.com' })
    const res = await postEnroll(t.app, { token, contentType: 'application/x-www-form-urlencoded' })
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-type']).toBe('application/x-apple-aspen-config')
    expect(res.headers['content-disposition']).toBe('attachment; filename="enrollment.mobileconfig"')
    expect(res.headers['x-content-type-options']).toBe('nosniff')

    const profile = verifyProfile(t.app, res.rawPayload)
    expect(Object.keys(profile).sort()).toEqual(['PayloadContent', 'PayloadDisplayName', 'PayloadIdentifier', 'PayloadOrganization', 'PayloadType', 'PayloadUUID', 'PayloadVersion'])
    expect(profile).toMatchObject({ PayloadType: 'Configuration', PayloadVersion: 1, PayloadDisplayName: 'Example Corp', PayloadOrganization: 'Example Corp' })
    expect(profile.PayloadUUID).toMatch(UUID)
    expect(profile.PayloadContent).toHaveLength(2)

    const mdm = payloadOf(profile, 'com.apple.mdm')
    const scep = payloadOf(profile, 'com.apple.security.scep')
    expect(Object.keys(mdm).sort()).toEqual(
      [
        'AssignedManagedAppleID',
        'CheckOutWhenRemoved',
        'EnrollmentMode',
        'IdentityCertificateUUID',
        'PayloadDisplayName',
        'PayloadIdentifier',
        'PayloadType',
        'PayloadUUID',
        'PayloadVersion',
        'ServerCapabilities',
        'ServerURL',
        'SignMessage',
        'Topic',
      ].sort(),
    )
    expect(mdm).toMatchObject({
      EnrollmentMode: 'BYOD',
      AssignedManagedAppleID: 'Alice@Example.com',
      Topic: TOPIC,
      ServerURL: 'https://mdm.example.test/mdm/apple/mdm',
      SignMessage: true,
      CheckOutWhenRemoved: true,
      ServerCapabilities: ['com.apple.mdm.per-user-connections'],
      PayloadVersion: 1,
    })
    expect(mdm.IdentityCertificateUUID).toBe(scep.PayloadUUID)
    expect(scep.PayloadUUID).toMatch(UUID)
    expect(new Set([profile.PayloadUUID, mdm.PayloadUUID, scep.PayloadUUID]).size).toBe(3)

    const content = scep.PayloadContent
    if (!isDict(content)) throw new Error('SCEP PayloadContent is not a dict')
    expect(Object.keys(content).sort()).toEqual(['CAFingerprint', 'Challenge', 'Key Type', 'Key Usage', 'Keysize', 'Name', 'Retries', 'RetryDelay', 'Subject', 'URL'].sort())
    expect(content).toMatchObject({ URL: 'https://mdm.example.test/mdm/apple/scep', Keysize: 2048, 'Key Type': 'RSA', 'Key Usage': 5 })
    const caPem = path.join(tmp, 'scep-ca.pem')
    writeFileSync(caPem, t.app.keys.scepCa.certificate.toString())
    const sha1 = execFileSync('openssl', ['x509', '-in', caPem, '-noout', '-fingerprint', '-sha1']).toString().split('=')[1]!.trim().replace(/:/g, '')
    expect(Buffer.from(content.CAFingerprint as Uint8Array).toString('hex').toUpperCase()).toBe(sha1)
    const subject = content.Subject as unknown[]
    expect(subject.every((rdn) => Array.isArray(rdn) && rdn.every((pair) => Array.isArray(pair) && pair.length === 2 && pair.every((v) => typeof v === 'string')))).toBe(true)
    expect(subject).toContainEqual([['O', 'Example Corp']])

    // The challenge is one-time, stored only as its hash, tied to this token and profile, and expires
    // with the token's enrollment window.
    const challenge = content.Challenge as string
    expect(challenge).toMatch(/^[A-Za-z0-9_-]{43}$/)
    const tokenRow = await prisma.accessToken.findUniqueOrThrow({ where: { id: tokenId } })
    const stored = await prisma.scepChallenge.findUniqueOrThrow({ where: { challengeHash: new Uint8Array(createHash('sha256').update(challenge).digest()) } })
    expect(stored).toMatchObject({ accessTokenId: tokenId, userId, teamId: t.app.defaultTeam.id, usedAt: null })
    expect(stored.expiresAt.getTime()).toBe(tokenRow.enrollUntil.getTime())
    expect(tokenRow.profileIssuedAt).not.toBeNull()

    // The record holds what the profile was issued with, and what the device said about itself.
    const record = await prisma.enrollmentProfile.findUniqueOrThrow({ where: { id: stored.enrollmentProfileId! } })
    expect(record).toMatchObject({
      accessTokenId: tokenId,
      serverUrl: mdm.ServerURL,
      topic: TOPIC,
      assignedManagedAppleId: 'Alice@Example.com',
      enrollmentMode: 'BYOD',
      payloadIdentifier: profile.PayloadIdentifier,
      deviceProduct: 'iPhone12,1',
      deviceVersion: '19H12',
      deviceLanguage: 'ja-JP',
    })
    expect(record.payloadUuid.toUpperCase()).toBe(profile.PayloadUUID)
    expect(record.scepPayloadUuid.toUpperCase()).toBe(scep.PayloadUUID)

    // Neither the token nor the challenge reached the log.
    const logText = t.logLines.join('\n')
    expect(logText).toContain('enroll: profile issued')
    expect(logText).not.toContain(token)
    expect(logText).not.toContain(challenge)
  })

  it('gives every profile fresh UUIDs and a fresh challenge under the same stable identifiers', async () => {
    const profiles = []
    for (let i = 0; i < 2; i++) {
      const { token } = await signIn(t.app)
      const res = await postEnroll(t.app, { token })
      expect(res.statusCode).toBe(200)
      profiles.push(verifyProfile(t.app, res.rawPayload))
    }
    const [a, b] = profiles as [PlistDict, PlistDict]
    expect(a.PayloadIdentifier).toBe(b.PayloadIdentifier)
    expect(a.PayloadUUID).not.toBe(b.PayloadUUID)
    for (const type of ['com.apple.mdm', 'com.apple.security.scep']) {
      expect(payloadOf(a, type).PayloadIdentifier).toBe(payloadOf(b, type).PayloadIdentifier)
      expect(payloadOf(a, type).PayloadUUID).not.toBe(payloadOf(b, type).PayloadUUID)
    }
    expect((payloadOf(a, 'com.apple.security.scep').PayloadContent as PlistDict).Challenge).not.toBe((payloadOf(b, 'com.apple.security.scep').PayloadContent as PlistDict).Challenge)
  })

  it('issues exactly one profile when the same token is posted five times at once', async () => {
    const { token, tokenId } = await signIn(t.app)
    const results = await Promise.all([...Array(5)].map(() => postEnroll(t.app, { token })))
    expect(results.map((r) => r.statusCode).sort()).toEqual([200, 401, 401, 401, 401])
    expect(await t.app.db.prisma.enrollmentProfile.count({ where: { accessTokenId: tokenId } })).toBe(1)
    expect(await t.app.db.prisma.scepChallenge.count({ where: { accessTokenId: tokenId } })).toBe(1)
  })

  it('takes the IdP email as AssignedManagedAppleID when the typed identifier differs, and refuses without any', async () => {
    const { token } = await signIn(t.app, { email: 'bob@example.com', userIdentifier: 'someone-else@example.com' })
    const res = await postEnroll(t.app, { token })
    expect(res.statusCode).toBe(200)
    expect(payloadOf(verifyProfile(t.app, res.rawPayload), 'com.apple.mdm').AssignedManagedAppleID).toBe('bob@example.com')

    const nobody = await signIn(t.app, { email: null, userIdentifier: 'carol@example.com' })
    const before = await writtenRows(t.app)
    const refused = await postEnroll(t.app, { token: nobody.token })
    expect(refused.statusCode).toBe(403)
    expect(refused.json()).toEqual({ error: 'no_managed_apple_id', message: expect.stringMatching(/No Managed Apple Account.*MANAGED_APPLE_ID_SOURCE=auto/) })
    expect(await writtenRows(t.app)).toEqual(before)
  })
})

describe('hostile and broken bodies', () => {
  it('refuse garbage, truncated, deep-BER, empty and non-plist bodies with 400, oversized ones with 413, and write nothing', async () => {
    const { token, tokenId } = await signIn(t.app)
    const keys = await generateRsaKeyPair()
    const certificate = await createSelfSigned({ subject: [['CN', 'x']], keys, notBefore: new Date(), notAfter: new Date(Date.now() + 86400_000), keyUsage: ['digitalSignature'] })
    const signedGarbage = (content: string) => signCms({ content: Buffer.from(content), certificate, privateKey: keys.privateKey })
    const bodies: [string, Buffer | string, number][] = [
      ['garbage', 'hello, this is not CMS', 400],
      ['truncated', enrollBody.subarray(0, enrollBody.length - 10), 400],
      ['one byte changed in the content', Buffer.from(enrollBody.toString('latin1').replace('ja-JP', 'ja-XX'), 'latin1'), 400],
      ['deep BER', Buffer.concat([...Array(20_000)].map(() => Buffer.from([0x30, 0x80]))), 400],
      ['empty', Buffer.alloc(0), 400],
      ['exactly 64 KiB of zeros', Buffer.alloc(64 * 1024), 400],
      ['64 KiB + 1', Buffer.alloc(64 * 1024 + 1), 413],
      ['1 MB', Buffer.alloc(1024 * 1024, 0x30), 413],
    ]
    const before = await writtenRows(t.app)
    for (const [what, body, status] of bodies) {
      const res = await postEnroll(t.app, { token, body })
      expect(res.statusCode, what).toBe(status)
      expect(res.headers['content-type'], what).toMatch(/^application\/json/)
      expect(res.json().error, what).toBe(status === 413 ? 'payload_too_large' : 'invalid_enroll_request')
    }
    // Well-formed CMS whose content is not the request plist: in log mode it would get past the signer check.
    const logMode = await buildTestApp({ env: { ENROLL_DEVICE_SIGNATURE: 'log' } })
    try {
      const other = await signIn(logMode.app)
      for (const content of ['bplist00garbage', '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><plist><dict/></plist>', '{"PRODUCT":"iPhone12,1"}']) {
        const res = await postEnroll(logMode.app, { token: other.token, body: signedGarbage(content) })
        expect(res.statusCode, content).toBe(400)
        expect(res.json().error, content).toBe('invalid_plist')
      }
      expect(await writtenRows(logMode.app)).toMatchObject({ profiles: 0, challenges: 0, consumedTokens: 0 })
    } finally {
      await logMode.close()
    }
    expect(await writtenRows(t.app)).toEqual(before)
    // The token was not used up by any of them.
    expect((await t.app.db.prisma.accessToken.findUniqueOrThrow({ where: { id: tokenId } })).profileIssuedAt).toBeNull()
    expect((await postEnroll(t.app, { token })).statusCode).toBe(200)
  })

  it('answers mutated device bodies with 400, 401 or 403, never a 500', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.nat(enrollBody.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), async (edits) => {
        const body = Buffer.from(enrollBody)
        for (const [at, value] of edits) body[at] = value
        const res = await postEnroll(t.app, { body })
        expect([400, 401, 403]).toContain(res.statusCode)
      }),
      { numRuns: 150 },
    )
  })
})

describe('device signature policy', () => {
  async function selfSignedBody(product = 'iPhone12,1', cn = 'Laptop pretending to be an iPhone') {
    const keys = await generateRsaKeyPair()
    const certificate = await createSelfSigned({ subject: [['CN', cn]], keys, notBefore: new Date(), notAfter: new Date(Date.now() + 86400_000), keyUsage: ['digitalSignature'] })
    const content = `<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict><key>PRODUCT</key><string>${product}</string></dict></plist>`
    return signCms({ content: Buffer.from(content), certificate, privateKey: keys.privateKey, digest: 'sha1' })
  }

  it('strict (default): refuses a body signed by a non-Apple key with 403 and a logged reason, writing nothing', async () => {
    const { token } = await signIn(t.app)
    const before = await writtenRows(t.app)
    const res = await postEnroll(t.app, { token, body: await selfSignedBody() })
    expect(res.statusCode).toBe(403)
    expect(res.json()).toMatchObject({ error: 'untrusted_device' })
    // The chain's names are the sender's words: logged, not echoed (SECURITY.md row 29).
    expect(res.body).not.toContain('Laptop pretending')
    expect(await writtenRows(t.app)).toEqual(before)
    const line = t.logs().findLast((l) => l.msg === 'request rejected')
    expect(JSON.stringify(line)).toContain('Laptop pretending to be an iPhone')
  })

  it('strict: an iPad body with an unknown chain is refused like an iPhone one (the same Apple device CA is pinned)', async () => {
    const res = await postEnroll(t.app, { body: await selfSignedBody('iPad13,4') })
    expect(res.statusCode).toBe(403)
    expect(res.json()).toMatchObject({ error: 'untrusted_device' })
  })

  it.each([
    ['a Mac', 'MacBookPro18,3', 'Mac'],
    ['an Apple Vision Pro', 'RealityDevice14,1', 'RealityDevice'],
  ])('strict: %s with a chain that is not pinned is accepted with a warning naming the chain to pin', async (_what, product, family) => {
    const { token } = await signIn(t.app)
    const challenge = await postEnroll(t.app, { body: await selfSignedBody(product, `Unknown ${family} CA`) })
    expect(challenge.statusCode).toBe(401)
    const res = await postEnroll(t.app, { token, body: await selfSignedBody(product, `Unknown ${family} CA`) })
    expect(res.statusCode).toBe(200)
    const warning = t.logs().findLast((l) => l.level === 40 && String(l.msg).startsWith('enroll request not signed by a known Apple device chain'))
    expect(String(warning?.msg)).toContain(`Apple's chain for ${family} is not pinned yet`)
    expect((warning?.device as { family?: string }).family).toBe(family)
    expect((warning?.chainSeen as string[])[0]).toMatch(new RegExp(`^Unknown ${family} CA \\(issuer Unknown ${family} CA, SPKI sha256:[0-9a-f]{64}\\)$`))
  })

  it('log: accepts it, warns with the reason, and MANAGED_APPLE_ID_SOURCE=user-identifier uses what was typed', async () => {
    const logMode = await buildTestApp({ env: { ENROLL_DEVICE_SIGNATURE: 'log', MANAGED_APPLE_ID_SOURCE: 'user-identifier' } })
    try {
      const { token } = await signIn(logMode.app, { email: 'dave@corp.example.com', userIdentifier: 'dave@appleid.example.com' })
      const res = await postEnroll(logMode.app, { token, body: await selfSignedBody() })
      expect(res.statusCode).toBe(200)
      expect(payloadOf(verifyProfile(logMode.app, res.rawPayload), 'com.apple.mdm').AssignedManagedAppleID).toBe('dave@appleid.example.com')
      const warning = logMode.logs().find((l) => l.level === 40 && String(l.msg).startsWith('enroll request not signed by a known Apple device chain'))
      expect(String(warning?.msg)).toContain('ENROLL_DEVICE_SIGNATURE=log')
      expect(warning?.untrustedReason).toMatch(/Laptop pretending to be an iPhone/)

      // Nothing typed: no account to assign.
      const untyped = await signIn(logMode.app, { email: 'erin@example.com' })
      expect((await postEnroll(logMode.app, { token: untyped.token })).json()).toMatchObject({ error: 'no_managed_apple_id' })
    } finally {
      await logMode.close()
    }
  })
})
