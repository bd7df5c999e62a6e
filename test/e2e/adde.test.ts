/**
 * Account-driven device enrollment (issue 19): a team set to `device` enrolls organisation-owned devices.
 * For each sign-in method, through the device simulator (src/device, `--enrollment device`) with the real
 * sign-in (development form, SAML at the in-process IdP, OAuth 2 at oidc-provider): discovery answers
 * mdm-adde -> the profile says EnrollmentMode ADDE with AccessRights and passes the one profile checker for
 * device enrollment on every platform -> SCEP -> Authenticate names the device by UDID (with its serial
 * number) -> a command only device enrollment allows is accepted for this enrollment, and refused by the
 * admin API for a user enrollment (BYOD) of the same user. Then the rules that differ, with hand-made
 * messages a simulated device would never send.
 */
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { simulateEnrollment, type SignInMethod } from '../../src/device/index.js'
import { buildPlist, type PlistDict, type PlistValue } from '../../src/protocol/plist.js'
import { PLATFORMS } from '../../src/protocol/platform.js'
import { profileErrors } from '../../src/protocol/profile-rules.js'
import { mintAccessToken } from '../../src/services/tokens.js'
import type { App } from '../../src/app.js'
import { admin, ADMIN_TOKEN } from '../helpers/admin.js'
import { buildTestApp, TEST_SERVER_URL, type TestApp } from '../helpers/app.js'
import { Device, type SignedInUser } from '../helpers/device.js'
import { payloadOf, postEnroll, verifyProfile } from '../helpers/enroll.js'
import { injectTransport } from '../helpers/inject-transport.js'
import { startTestIdp as startOidcIdp, type TestIdp as OidcIdp } from '../helpers/oidc-idp.js'
import { createTestIdp, type TestIdp as SamlIdp } from '../helpers/saml-idp.js'
import { certRep, issuedCertificate, postPkiOperation, rsaKeys, scepRequest } from '../helpers/scep.js'
import { tokenFrom } from '../helpers/sso.js'
import { oidcSession, samlSession } from '../helpers/web-sessions.js'

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

async function enrollmentOf(app: App, id: string) {
  return (await admin(app, 'GET', `/enrollments?enrollment_id=${id}`)).json().items[0] as { id: string; enrollment_type: string; device: Record<string, string>; status: string; user: { id: string; email: string } }
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

interface Method {
  name: 'dev' | 'saml' | 'oauth2'
  /** Who signs in: a corp.example.com account, so the Corporate team (device enrollment). */
  user: string
  app: () => App
  signIn: (app: App) => SignInMethod
  /** The method of the enroll 401's challenge. */
  challenge: 'apple-as-web' | 'apple-oauth2'
}

const METHODS: Method[] = [
  { name: 'dev', user: 'erin@corp.example.com', app: () => dev.app, signIn: () => ({ kind: 'dev' }), challenge: 'apple-as-web' },
  { name: 'saml', user: 'dave@corp.example.com', app: () => t.app, signIn: (app) => ({ kind: 'browser', session: samlSession(app, injectTransport(app), saml) }), challenge: 'apple-as-web' },
  { name: 'oauth2', user: 'carol@corp.example.com', app: () => t.app, signIn: () => ({ kind: 'browser', session: oidcSession({ login: 'carol@corp.example.com', password: 'pw' }) }), challenge: 'apple-oauth2' },
]

/** The Corporate team's sign-in: OAuth 2 for the oauth2 method, back to the server's SAML after it. */
async function useOAuth2(app: App, on: boolean): Promise<void> {
  const team = await app.db.prisma.team.findFirstOrThrow({ where: { name: 'Corporate' } })
  expect((await admin(app, 'PATCH', `/teams/${team.id}`, { auth_method: on ? 'oauth2' : null })).statusCode).toBe(200)
}

describe.each(METHODS)('account-driven device enrollment through the simulator: $name sign-in', (method) => {
  it('mdm-adde -> ADDE profile -> SCEP -> Authenticate by UDID -> a device-only command, refused for BYOD', async () => {
    const app = method.app()
    if (method.name === 'oauth2') await useOAuth2(app, true)
    try {
      const transport = injectTransport(app)
      const queued: string[] = []
      const report = await simulateEnrollment({
        transport,
        server: TEST_SERVER_URL,
        user: method.user,
        enrollment: 'device',
        signIn: method.signIn(app),
        beforeCommands: async (device) => {
          // EraseDevice: only device enrollment allows it on iOS (Apple's schema, device.erase.yaml).
          const enrollment = await enrollmentOf(app, device.deviceId)
          const erase = await admin(app, 'POST', `/enrollments/${enrollment.id}/commands`, { RequestType: 'EraseDevice', PIN: '123456' })
          expect(erase.statusCode, erase.body).toBe(201)
          queued.push(erase.json().command_uuid)
        },
      })
      expect(report.diagnosis?.text).toBeUndefined()
      expect(report.steps.map((s) => s.step)).toEqual(['discovery', 'enroll-challenge', 'sign-in', 'enroll', 'profile', 'scep', 'authenticate', 'token-update', 'commands', 'declarative-sync'])
      expect(report.steps.find((s) => s.step === 'discovery')!.summary).toMatch(/^mdm-adde at https:\/\/mdm\.example\.test\/api\/mdm\/apple\/enroll\//)
      expect(report.steps.find((s) => s.step === 'enroll-challenge')!.summary).toMatch(new RegExp(`^401 ${method.challenge} `))

      // The profile the device installed: Apple's MDM payload for device enrollment (EnrollmentMode ADDE, the
      // Managed Apple Account, AccessRights including device erase, bit 8), and what the one profile checker
      // says for device enrollment on every account-driven platform.
      const profile = report.device.profile!
      expect(profile.mdm.EnrollmentMode).toBe('ADDE')
      expect(String(profile.mdm.AssignedManagedAppleID).toLowerCase()).toBe(method.user)
      expect(Number(profile.mdm.AccessRights) & 8).toBe(8)
      expect(profile.dict.PayloadRemovalDisallowed).toBeUndefined()
      for (const platform of PLATFORMS) expect(profileErrors(profile.dict, { platform, enrollment: 'device' }), platform).toEqual([])

      // SCEP gave the identity Authenticate is signed with; Authenticate named the device by UDID and serial.
      expect(report.device.certificate).toBeDefined()
      const enrollment = await enrollmentOf(app, report.enrollmentId)
      expect(enrollment).toMatchObject({ enrollment_type: 'device', status: 'active', device: { udid: report.device.udid, serial_number: report.device.serialNumber } })
      expect(String(enrollment.user.email).toLowerCase()).toBe(method.user)

      // The device-only command reached the device, which acknowledged it (and, being simulated, erased nothing).
      expect(report.commands).toEqual([expect.objectContaining({ commandUuid: queued[0], requestType: 'EraseDevice', status: 'Acknowledged' })])
      expect((await admin(app, 'GET', `/commands/${queued[0]}`)).json().status).toBe('acknowledged')
      expect(report.noted).toEqual(['EraseDevice'])

      // The same user enrolls a personal device into a user-enrollment team (the Default team: example.com),
      // through the simulator with a token of theirs for that team (their sign-in is tested above).
      const userId = enrollment.user.id
      const personal = await mintAccessToken(app.db.prisma, { userId, teamId: app.defaultTeam.id, method: 'saml', windowSeconds: 3600 })
      const byodUrl = (await app.inject(`/.well-known/com.apple.remotemanagement?user-identifier=${encodeURIComponent('anyone@example.com')}&model-family=iPhone`)).json().Servers[0].BaseURL as string
      const byod = await simulateEnrollment({ transport, enrollUrl: byodUrl, user: method.user, enrollment: 'user', signIn: { kind: 'token', token: personal.token } })
      expect(byod.diagnosis?.text).toBeUndefined()
      const byodEnrollment = await enrollmentOf(app, byod.enrollmentId)
      expect(byodEnrollment.enrollment_type).toBe('user')
      expect(byodEnrollment.user.id).toBe(userId)
      const refused = await admin(app, 'POST', `/enrollments/${byodEnrollment.id}/commands`, { RequestType: 'EraseDevice' })
      expect(refused.statusCode).toBe(400)
      expect(refused.json().message).toMatch(/EraseDevice is forbidden under user enrollment/)
    } finally {
      if (method.name === 'oauth2') await useOAuth2(app, false)
    }
  }, 180_000)
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
