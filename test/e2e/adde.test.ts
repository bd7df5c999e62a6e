/**
 * Account-driven device enrollment (issue 19): a team set to `device` enrolls organisation-owned devices.
 * For each sign-in method: discovery answers mdm-adde -> the profile says EnrollmentMode ADDE with
 * AccessRights -> SCEP -> Authenticate names the device by UDID (with its serial number) -> a command only
 * device enrollment allows is accepted for this enrollment and refused for a user enrollment of the same
 * user.
 */
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildPlist, type PlistDict, type PlistValue } from '../../src/protocol/plist.js'
import { PLATFORMS } from '../../src/protocol/platform.js'
import { ALL_ACCESS_RIGHTS } from '../../src/protocol/profile.js'
import { profileErrors } from '../../src/protocol/profile-rules.js'
import { mintAccessToken } from '../../src/services/tokens.js'
import type { App } from '../../src/app.js'
import { admin, ADMIN_TOKEN } from '../helpers/admin.js'
import { buildTestApp, type TestApp } from '../helpers/app.js'
import { activeDevice, COMMAND, Device, type SignedInUser } from '../helpers/device.js'
import { payloadOf, postEnroll, verifyProfile } from '../helpers/enroll.js'
import { parseBearerChallenge, postToken, signInAtIdp } from '../helpers/oauth2-device.js'
import { startTestIdp as startOidcIdp, type TestIdp as OidcIdp } from '../helpers/oidc-idp.js'
import { createTestIdp, type TestIdp as SamlIdp } from '../helpers/saml-idp.js'
import { certRep, issuedCertificate, postPkiOperation, rsaKeys, scepRequest } from '../helpers/scep.js'
import { postCallback, spFromMetadata, startSignIn, tokenFrom } from '../helpers/sso.js'

let saml: SamlIdp
let oidc: OidcIdp
/** SAML and OAuth 2 teams; the development sign-in needs a server without a SAML IdP. */
let t: TestApp
let dev: TestApp
beforeAll(async () => {
  saml = await createTestIdp()
  oidc = await startOidcIdp()
  oidc.accounts.set('carol-sub', { sub: 'carol-sub', password: 'pw', email: 'carol@corp.example.com', name: 'Carol' })
  t = await buildTestApp({
    env: {
      ...saml.env,
      SSO_RATE_LIMIT: '1000',
      OIDC_ISSUER: oidc.issuer,
      OIDC_CLIENT_ID: oidc.clientId,
      OIDC_CLIENT_SECRET: oidc.clientSecret,
      OIDC_ALLOW_INSECURE_HTTP: 'true',
      ENROLL_DOMAINS: 'corp.example.com=Corporate, example.com',
      ENROLL_DEVICE_TEAMS: 'Corporate',
      ADMIN_API_TOKEN: ADMIN_TOKEN,
    },
  })
  dev = await buildTestApp({ env: { ENROLL_DOMAINS: 'corp.example.com=Corporate, example.com', ENROLL_DEVICE_TEAMS: 'Corporate', ADMIN_API_TOKEN: ADMIN_TOKEN } })
})
afterAll(async () => {
  await t?.close()
  await dev?.close()
  await oidc?.close()
})

/** What the device does first: discovery for the user, whose answer names the enroll URL and the mode. */
async function discover(app: App, user: string): Promise<{ version: string; enrollPath: string }> {
  const res = await app.inject(`/.well-known/com.apple.remotemanagement?user-identifier=${encodeURIComponent(user)}&model-family=iPhone`)
  expect(res.statusCode).toBe(200)
  const server = res.json().Servers[0] as { Version: string; BaseURL: string }
  return { version: server.Version, enrollPath: new URL(server.BaseURL).pathname }
}

/** The rest of the enrollment with an access token: profile, SCEP, and a device that names itself by UDID. */
async function enrollAsDevice(app: App, enrollPath: string, user: SignedInUser) {
  const res = await postEnroll(app, { path: enrollPath, token: user.token })
  expect(res.statusCode, res.body).toBe(200)
  const profile = verifyProfile(app, res.rawPayload)
  const mdm = payloadOf(profile, 'com.apple.mdm')
  const scep = payloadOf(profile, 'com.apple.security.scep').PayloadContent as PlistDict
  const keys = rsaKeys()
  const request = scepRequest(app, { challenge: scep.Challenge as string, keys })
  const certificate = issuedCertificate(certRep(app, (await postPkiOperation(app, request.der)).rawPayload, request.signer))
  const udid = `00008110-${randomUUID().replace(/-/g, '').slice(0, 16).toUpperCase()}`
  const device = new Device(app, keys, certificate, user, mdm.Topic as string, new URL(mdm.ServerURL as string).pathname, udid)
  return { device, mdm, profile, udid }
}

/** A device-enrollment message: UDID, never EnrollmentID (the Device helper's own bodies carry EnrollmentID). */
function deviceMessage(device: Device, fields: Record<string, PlistValue>): Buffer {
  return Buffer.from(buildPlist({ UDID: device.enrollmentId, ...fields }), 'utf8')
}

async function checkIn(device: Device, serial: string) {
  const auth = await device.put(deviceMessage(device, { MessageType: 'Authenticate', Topic: device.topic, SerialNumber: serial, ProductName: 'iPhone15,2', OSVersion: '18.2', BuildVersion: '22C152' }))
  expect(auth.statusCode, auth.body).toBe(200)
  const token = await device.put(deviceMessage(device, { MessageType: 'TokenUpdate', Topic: device.topic, Token: new Uint8Array([9, 9, 9]), PushMagic: 'ADDE-MAGIC' }))
  expect(token.statusCode, token.body).toBe(200)
}

async function enrollmentOf(app: App, id: string) {
  return (await admin(app, 'GET', `/enrollments?enrollment_id=${id}`)).json().items[0] as { id: string; enrollment_type: string; device: Record<string, string>; status: string }
}

async function signInWith(method: 'saml' | 'oauth2' | 'dev', enrollPath: string): Promise<{ app: App; user: SignedInUser }> {
  if (method === 'dev') {
    return { app: dev.app, user: await devSignIn(enrollPath) }
  }
  if (method === 'saml') {
    const sso = new URL(/url="([^"]+)"/.exec(String((await postEnroll(t.app, { path: enrollPath })).headers['www-authenticate']))![1]!)
    const sp = await spFromMetadata(t.app)
    const request = await saml.readRequest(await startSignIn(t.app, { enrollmentToken: sso.pathname.split('/').pop()!, userIdentifier: 'dave@corp.example.com' }), sp.metadata)
    const token = tokenFrom(await postCallback(t.app, { SAMLResponse: await saml.respond(request, sp, { nameId: 'dave@corp.example.com' }), RelayState: request.relayState }))
    return { app: t.app, user: await userOf(t.app, token) }
  }
  const res = await postEnroll(t.app, { path: enrollPath })
  const challenge = parseBearerChallenge(res.headers['www-authenticate'] as string)
  expect(challenge.method).toBe('apple-oauth2')
  const { code } = await signInAtIdp(challenge, { login: 'carol@corp.example.com', password: 'pw' })
  const token = await postToken(t.app, challenge['token-url']!, { grant_type: 'authorization_code', code, redirect_uri: challenge['redirect-url']!, client_id: challenge['client-id']! })
  expect(token.statusCode, token.body).toBe(200)
  return { app: t.app, user: await userOf(t.app, token.json().access_token) }
}

async function devSignIn(enrollPath: string): Promise<SignedInUser> {
  const teamToken = enrollPath.split('/').pop()!
  const res = await dev.app.inject({ method: 'POST', url: '/api/v1/mdm/sso/dev', headers: { 'content-type': 'application/json' }, payload: { email: 'erin@corp.example.com', enrollmentToken: teamToken, userIdentifier: 'erin@corp.example.com' } })
  return userOf(dev.app, tokenFrom(res))
}

async function userOf(app: App, token: string): Promise<SignedInUser> {
  const { hashSecret } = await import('../../src/pki/secrets.js')
  const record = await app.db.prisma.accessToken.findUniqueOrThrow({ where: { tokenHash: hashSecret(token) } })
  return { token, tokenId: record.id, userId: record.userId }
}

describe('account-driven device enrollment, per sign-in method', () => {
  it.each(['dev', 'saml', 'oauth2'] as const)('%s: mdm-adde -> ADDE profile -> SCEP -> Authenticate by UDID -> device-only commands', async (method) => {
    const app = method === 'dev' ? dev.app : t.app
    const { version, enrollPath } = await discover(app, `someone@corp.example.com`)
    expect(version).toBe('mdm-adde')
    if (method === 'oauth2') {
      const team = await app.db.prisma.team.findFirstOrThrow({ where: { name: 'Corporate' } })
      expect((await admin(app, 'PATCH', `/teams/${team.id}`, { auth_method: 'oauth2' })).statusCode).toBe(200)
    }
    const { user } = await signInWith(method, enrollPath)
    const { device, mdm, profile, udid } = await enrollAsDevice(app, enrollPath, user)
    // Apple's MDM payload for device enrollment: EnrollmentMode ADDE, the Managed Apple Account, AccessRights.
    expect(mdm.EnrollmentMode).toBe('ADDE')
    expect(mdm.AccessRights).toBe(ALL_ACCESS_RIGHTS)
    expect(typeof mdm.AssignedManagedAppleID).toBe('string')
    expect(profile.PayloadRemovalDisallowed).toBeUndefined()
    // Issue 19: the served profile obeys Apple's schema for device enrollment on every account-driven platform.
    for (const platform of PLATFORMS) expect(profileErrors(profile, { platform, enrollment: 'device' }), platform).toEqual([])
    await checkIn(device, 'F2LXK0ABCDEF')
    const enrollment = await enrollmentOf(app, udid)
    expect(enrollment).toMatchObject({ enrollment_type: 'device', status: 'active', device: { udid, serial_number: 'F2LXK0ABCDEF' } })

    // EraseDevice: only device enrollment allows it on iOS.
    const queued = await admin(app, 'POST', `/enrollments/${enrollment.id}/commands`, { RequestType: 'EraseDevice', PIN: '123456' })
    expect(queued.statusCode, queued.body).toBe(201)
    const idle = await device.put(deviceMessage(device, { Status: 'Idle' }), { contentType: COMMAND })
    expect(idle.statusCode).toBe(200)
    expect(idle.body).toContain('EraseDevice')
    // The same user enrolls a personal device into a user-enrollment team (a sign-in of theirs for it).
    const second = await mintAccessToken(app.db.prisma, { userId: user.userId, teamId: app.defaultTeam.id, method: 'saml', windowSeconds: 3600 })
    const byod = await activeDevice(app, { user: { token: second.token, tokenId: second.record.id, userId: user.userId } })
    const byodEnrollment = await enrollmentOf(app, byod.enrollmentId)
    expect(byodEnrollment.enrollment_type).toBe('user')
    const refused = await admin(app, 'POST', `/enrollments/${byodEnrollment.id}/commands`, { RequestType: 'EraseDevice' })
    expect(refused.statusCode).toBe(400)
    expect(refused.json().message).toMatch(/EraseDevice is forbidden under user enrollment/)
    if (method === 'oauth2') {
      const team = await app.db.prisma.team.findFirstOrThrow({ where: { name: 'Corporate' } })
      await admin(app, 'PATCH', `/teams/${team.id}`, { auth_method: null })
    }
  })
})

describe('the rules that differ', () => {
  it('a device-enrollment profile with an EnrollmentID Authenticate is 400', async () => {
    const { enrollPath } = await discover(dev.app, 'frank@corp.example.com')
    const user = await devSignIn(enrollPath)
    const { device } = await enrollAsDevice(dev.app, enrollPath, user)
    const wrong = await device.put(Buffer.from(buildPlist({ EnrollmentID: device.enrollmentId, MessageType: 'Authenticate', Topic: device.topic }), 'utf8'))
    expect(wrong.statusCode).toBe(400)
    expect(wrong.json()).toMatchObject({ error: 'enrollment_type_mismatch' })
  })

  it('a user-enrollment profile with a UDID Authenticate is 400 too, and nothing is stored', async () => {
    // example.com goes to the Default team, which stays user enrollment; the same steps give a user-enrollment profile.
    const { version, enrollPath } = await discover(dev.app, 'grace@example.com')
    expect(version).toBe('mdm-byod')
    const user = await devSignIn(enrollPath)
    const { device, mdm } = await enrollAsDevice(dev.app, enrollPath, user)
    expect(mdm.EnrollmentMode).toBe('BYOD')
    const before = await dev.app.db.prisma.mdmEnrollment.count()
    const wrong = await device.put(deviceMessage(device, { MessageType: 'Authenticate', Topic: device.topic, SerialNumber: 'C02XL0GHJGH5' }))
    expect(wrong.statusCode).toBe(400)
    expect(wrong.json()).toMatchObject({ error: 'enrollment_type_mismatch' })
    expect(await dev.app.db.prisma.mdmEnrollment.count()).toBe(before)
  })

  it('the admin API sets a team\'s enrollment_type, and discovery follows', async () => {
    const team = (await admin(t.app, 'POST', '/teams', { name: 'Kiosks', enrollment_type: 'device' })).json()
    expect(team).toMatchObject({ enrollment_type: 'device', discovery: { Servers: [{ Version: 'mdm-adde' }] } })
    const back = (await admin(t.app, 'PATCH', `/teams/${team.id}`, { enrollment_type: 'user' })).json()
    expect(back.discovery.Servers[0].Version).toBe('mdm-byod')
    expect((await admin(t.app, 'PATCH', `/teams/${team.id}`, { enrollment_type: 'kiosk' })).statusCode).toBe(400)
  })

  it('user-enrolled devices stay mdm-byod, BYOD, without AccessRights', async () => {
    const { version } = await discover(t.app, 'gina@example.com')
    expect(version).toBe('mdm-byod')
  })
})
