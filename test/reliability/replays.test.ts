/**
 * Concurrent replays (issue 16, SECURITY.md rows 11, 14, 16, 18): the same secret or message sent N times
 * at once, split between two app instances on one database (two server processes behind a load
 * balancer), has exactly one effect. The same SAMLResponse mints one token; the same authorization code
 * one grant; the same refresh token at most one new token (and, as reuse, ends the grant: RFC 9700
 * section 4.14.2); the same SCEP challenge one certificate; the same Authenticate one enrollment; the same
 * Acknowledged one stored result. Single-instance versions live next to each endpoint's tests.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hashSecret } from '../../src/pki/secrets.js'
import { buildCommandReport } from '../../src/protocol/checkin.js'
import { ADMIN_TOKEN } from '../helpers/admin.js'
import { buildTestAppPair, type TestApp, type TestAppPair } from '../helpers/app.js'
import { activeDevice, COMMAND, Device, enrollDevice } from '../helpers/device.js'
import { postEnroll } from '../helpers/enroll.js'
import { recordFigures } from '../helpers/figures.js'
import { oauth2Env, tokenRows } from '../helpers/oauth2.js'
import { parseBearerChallenge, postToken, signInAtIdp, type Challenge } from '../helpers/oauth2-device.js'
import { APPLE_REDIRECT_URI, startTestIdp, type TestIdp } from '../helpers/oidc-idp.js'
import { createTestIdp, type TestIdp as SamlIdp } from '../helpers/saml-idp.js'
import { certRep, createEnrollment, postPkiOperation, rsaKeys, scepRequest } from '../helpers/scep.js'
import { counts, idpAnswer, postCallback } from '../helpers/sso.js'

const N = 8
const pair = <T>(a: T, b: T) => (i: number) => (i % 2 ? b : a)

let samlIdp: SamlIdp
let oidcIdp: TestIdp
let apps: TestAppPair
let oauthPair: TestAppPair
let a: TestApp
let b: TestApp
let oa: TestApp
let ob: TestApp

beforeAll(async () => {
  samlIdp = await createTestIdp()
  oidcIdp = await startTestIdp()
  oidcIdp.accounts.set('replay-sub', { sub: 'replay-sub', password: 'pa55word', email: 'replay@example.com', name: 'Replay' })
  apps = await buildTestAppPair({ ...samlIdp.env, ADMIN_API_TOKEN: ADMIN_TOKEN, SSO_RATE_LIMIT: '100000' })
  ;({ a, b } = apps)
  oauthPair = await buildTestAppPair(oauth2Env(oidcIdp, { OAUTH2_RATE_LIMIT: '100000' }))
  ;({ a: oa, b: ob } = oauthPair)
}, 180_000)

afterAll(async () => {
  await Promise.all([apps?.close(), oauthPair?.close()])
  await oidcIdp?.close()
})

describe('the same SAMLResponse at once on two instances', () => {
  it('mints exactly one token', async () => {
    const { form } = await idpAnswer(a.app, samlIdp, { userIdentifier: 'alice@example.test' })
    const before = await counts(a.app)
    const results = await Promise.all(Array.from({ length: N }, (_, i) => postCallback(pair(a, b)(i).app, form)))
    const accepted = results.filter((r) => r.statusCode === 308).length
    expect(accepted).toBe(1)
    expect(results.filter((r) => r.statusCode === 400)).toHaveLength(N - 1)
    const minted = (await counts(a.app)).tokens - before.tokens
    expect(minted).toBe(1)
    recordFigures('replay: SAMLResponse x8 on 2 instances', { inputs: N, accepted, 'duplicate rows': minted - 1, '5xx': results.filter((r) => r.statusCode >= 500).length })
  })
})

describe('OAuth 2 on two instances', () => {
  let challenge: Challenge
  beforeAll(async () => {
    challenge = parseBearerChallenge((await postEnroll(oa.app)).headers['www-authenticate'] as string)
  })
  const code = async () => (await signInAtIdp(challenge, { login: 'replay@example.com', password: 'pa55word' })).code
  const redeem = (i: number, c: string) => postToken(pair(oa, ob)(i).app, challenge['token-url']!, { grant_type: 'authorization_code', code: c, redirect_uri: APPLE_REDIRECT_URI, client_id: oidcIdp.clientId })

  it('the same authorization code at once: exactly one grant, the others invalid_grant', async () => {
    const c = await code()
    const before = await tokenRows(oa.app)
    const results = await Promise.all(Array.from({ length: N }, (_, i) => redeem(i, c)))
    const accepted = results.filter((r) => r.statusCode === 200).length
    expect(accepted, results.map((r) => `${r.statusCode} ${r.body}`).join('\n')).toBe(1)
    for (const r of results.filter((r) => r.statusCode !== 200)) expect(r.json().error).toBe('invalid_grant')
    const after = await tokenRows(oa.app)
    expect(after.grants - before.grants).toBe(1)
    expect(after.accessTokens - before.accessTokens).toBe(1)
    recordFigures('replay: OAuth 2 code x8 on 2 instances', { inputs: N, accepted, 'duplicate rows': after.grants - before.grants - 1, '5xx': results.filter((r) => r.statusCode >= 500).length })
  })

  it('the same refresh token at once: at most one new token, and the grant ends with no live token', async () => {
    const first = (await redeem(0, await code())).json() as { access_token: string; refresh_token: string }
    const before = await tokenRows(oa.app)
    const results = await Promise.all(Array.from({ length: N }, (_, i) => postToken(pair(oa, ob)(i).app, challenge['token-url']!, { grant_type: 'refresh_token', refresh_token: first.refresh_token, client_id: oidcIdp.clientId })))
    const accepted = results.filter((r) => r.statusCode === 200).length
    expect(accepted).toBeLessThanOrEqual(1)
    for (const r of results.filter((r) => r.statusCode !== 200)) expect(r.json().error).toBe('invalid_grant')
    const prisma = oa.app.db.prisma
    const { oauth2GrantId } = await prisma.accessToken.findFirstOrThrow({ where: { tokenHash: hashSecret(first.access_token) } })
    expect(await prisma.accessToken.count({ where: { oauth2GrantId, revokedAt: null } })).toBe(0)
    const minted = (await tokenRows(oa.app)).accessTokens - before.accessTokens
    expect(minted).toBe(accepted)
    recordFigures('replay: refresh token x8 on 2 instances', { inputs: N, accepted, 'duplicate rows': Math.max(0, minted - 1), 'live tokens after': 0 })
  })
})

describe('SCEP on two instances', () => {
  it('the same challenge in eight PKIOperations at once: exactly one certificate', async () => {
    const enrollment = await createEnrollment(a.app)
    const { id, challenge } = await enrollment.challenge()
    const keys = rsaKeys()
    const requests = Array.from({ length: N }, (_, i) => scepRequest(pair(a, b)(i).app, { challenge, keys }))
    const responses = await Promise.all(requests.map((r, i) => postPkiOperation(pair(a, b)(i).app, r.der)))
    const replies = responses.map((res, i) => certRep(pair(a, b)(i).app, res.rawPayload, requests[i]!.signer))
    const accepted = replies.filter((r) => r.status === 'SUCCESS').length
    expect(accepted).toBe(1)
    expect(replies.filter((r) => r.status === 'FAILURE' && r.failInfo === 'badRequest')).toHaveLength(N - 1)
    const issued = await a.app.db.prisma.deviceCertificate.count({ where: { scepChallengeId: id } })
    expect(issued).toBe(1)
    recordFigures('replay: SCEP challenge x8 on 2 instances', { inputs: N, accepted, 'duplicate rows': issued - 1 })
  })
})

describe('check-in on two instances', () => {
  it('the same Authenticate at once: 200 each, one enrollment, one binding, one channel', async () => {
    const device = await enrollDevice(a.app)
    const other = new Device(b.app, device.keys, device.certificate, device.user, device.topic, device.path, device.enrollmentId, device.token)
    const results = await Promise.all(Array.from({ length: N }, (_, i) => (i % 2 ? other : device).authenticate()))
    expect(results.map((r) => r.statusCode)).toEqual(Array(N).fill(200))
    const prisma = a.app.db.prisma
    const enrollments = await prisma.mdmEnrollment.count({ where: { enrollmentId: device.enrollmentId } })
    expect(enrollments).toBe(1)
    const enrollment = await prisma.mdmEnrollment.findFirstOrThrow({ where: { enrollmentId: device.enrollmentId } })
    expect(await prisma.mdmEnrollmentCertificate.count({ where: { mdmEnrollmentId: enrollment.id } })).toBe(1)
    expect(await prisma.mdmChannel.count({ where: { mdmEnrollmentId: enrollment.id } })).toBe(1)
    recordFigures('replay: Authenticate x8 on 2 instances', { inputs: N, accepted: N, 'duplicate rows': enrollments - 1 })
  })

  it('the same Acknowledged at once, each with a different result: 200 each, the first result stored once and kept', async () => {
    const device = await activeDevice(a.app)
    const other = new Device(b.app, device.keys, device.certificate, device.user, device.topic, device.path, device.enrollmentId, device.token)
    const list = await a.app.inject({ url: `/api/v1/admin/enrollments?enrollment_id=${device.enrollmentId}`, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
    const enrollmentId = list.json().items[0].id as string
    const queued = await a.app.inject({
      method: 'POST',
      url: `/api/v1/admin/enrollments/${enrollmentId}/commands`,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      payload: JSON.stringify({ RequestType: 'ProfileList' }),
    })
    expect(queued.statusCode, queued.body).toBe(201)
    const uuid = queued.json().command_uuid as string
    expect((await device.idle()).body).toContain(uuid)
    const reports = Array.from({ length: N }, (_, i) => buildCommandReport({ EnrollmentID: device.enrollmentId, Status: 'Acknowledged', CommandUUID: uuid, ProfileList: [], Attempt: i }))
    const results = await Promise.all(reports.map((body, i) => (i % 2 ? other : device).put(body, { contentType: COMMAND })))
    expect(results.map((r) => r.statusCode)).toEqual(Array(N).fill(200))
    const prisma = a.app.db.prisma
    const rows = await prisma.mdmCommand.findMany({ where: { commandUuid: uuid } })
    expect(rows).toHaveLength(1)
    expect(rows[0]!.status).toBe('acknowledged')
    const stored = (rows[0]!.result as { Attempt: number }).Attempt
    expect(stored).toBeGreaterThanOrEqual(0)
    // The others were duplicates: each instance logged them as ignored, and the stored result stayed.
    const ignored = [...a.logs(), ...b.logs()].filter((l) => JSON.stringify((l.mdm as { note?: string } | undefined)?.note ?? '').includes(`result already stored`) && JSON.stringify(l).includes(uuid)).length
    expect(ignored).toBe(N - 1)
    const late = await other.put(buildCommandReport({ EnrollmentID: device.enrollmentId, Status: 'Acknowledged', CommandUUID: uuid, Attempt: 99 }), { contentType: COMMAND })
    expect(late.statusCode).toBe(200)
    expect(((await prisma.mdmCommand.findUniqueOrThrow({ where: { commandUuid: uuid } })).result as { Attempt: number }).Attempt).toBe(stored)
    recordFigures('replay: Acknowledged x8 on 2 instances', { inputs: N, accepted: N - ignored, 'duplicate rows': rows.length - 1 })
  })
})
