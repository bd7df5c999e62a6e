/**
 * The one profile checker (src/protocol/profile-rules.ts `checkProfile`: Apple's schema and the rules of
 * PROTOCOL.md section 6) on an enrollment profile: the profile this server builds passes; each broken rule
 * is named with what a device does about it. The schema's own cases are in profile-schema.test.ts.
 */
import { describe, expect, it } from 'vitest'
import type { PlistDict } from '../../src/protocol/plist.js'
import { buildEnrollmentProfile, type EnrollmentProfileSpec } from '../../src/protocol/profile.js'
import { ALL_ACCESS_RIGHTS } from '../../src/protocol/profile.js'
import { checkProfile, type Enrollment } from '../../src/protocol/profile-rules.js'

const SPEC: EnrollmentProfileSpec = {
  payloadIdentifier: 'com.example.mdm',
  payloadUuid: '6C1E1E84-0000-4000-8000-000000000001',
  mdmPayloadUuid: '6C1E1E84-0000-4000-8000-000000000002',
  scepPayloadUuid: '6C1E1E84-0000-4000-8000-000000000003',
  displayName: 'Example',
  organization: 'Example Corp',
  mdm: {
    enrollmentMode: 'BYOD',
    assignedManagedAppleId: 'alice@example.com',
    serverUrl: 'https://mdm.example.com/mdm/apple/mdm',
    topic: 'com.apple.mgmt.External.5b1a8c0e-2f4e-4d1b-9a57-0c3d2e1f4a6b',
    signMessage: true,
    checkOutWhenRemoved: true,
    serverCapabilities: ['com.apple.mdm.per-user-connections'],
  },
  scep: { url: 'https://mdm.example.com/mdm/apple/scep', name: 'CA', subject: [[['CN', 'x']]], challenge: 'secret', caFingerprint: new Uint8Array(20) },
}

/** The profile with its com.apple.mdm payload (or the SCEP one's PayloadContent) changed. */
function profile(change: { top?: PlistDict; mdm?: PlistDict; scep?: PlistDict } = {}): PlistDict {
  const p = buildEnrollmentProfile(SPEC)
  const [scep, mdm] = p.PayloadContent as PlistDict[]
  Object.assign(mdm!, change.mdm)
  Object.assign(scep!.PayloadContent as PlistDict, change.scep)
  return { ...p, ...change.top }
}

/** What an iPhone finds, enrolling as `enrollment` (user enrollment, mdm-byod, by default). */
const check = (p: PlistDict, enrollment: Enrollment = 'user') => checkProfile(p, { platform: 'iOS', enrollment })
const errors = (p: PlistDict, enrollment?: Enrollment) => check(p, enrollment).filter((f) => f.severity === 'error').map((f) => f.rule)

describe('enrollment profile rules (PROTOCOL.md section 6)', () => {
  it('the profile this server builds breaks none', () => {
    expect(check(profile())).toEqual([])
  })

  it('names AccessRights, PayloadRemovalDisallowed and a mode that does not match discovery', () => {
    // The schema has these two (userenrollment mode ignored / forbidden); an error, not a warning, because
    // the device cancels a BYOD enrollment with AccessRights (PROTOCOL.md section 6).
    expect(errors(profile({ mdm: { AccessRights: 8191 } }))).toEqual(['com.apple.mdm: AccessRights is ignored under user enrollment on iOS'])
    expect(errors(profile({ top: { PayloadRemovalDisallowed: true } }))).toEqual([
      'Configuration: PayloadRemovalDisallowed is forbidden under user enrollment on iOS',
      'Configuration: PayloadRemovalDisallowed requires a supervised device on iOS; user enrollment is never supervised',
    ])
    expect(errors(profile({ mdm: { EnrollmentMode: 'ADDE' } }))).toEqual(['EnrollmentMode is "ADDE" but discovery said mdm-byod (which needs BYOD): a device would cancel enrollment'])
    expect(errors(profile({ mdm: { AccessRights: ALL_ACCESS_RIGHTS } }), 'device')).toEqual(['EnrollmentMode is "BYOD" but discovery said mdm-adde (which needs ADDE): a device would cancel enrollment'])
  })

  it('device enrollment (mdm-adde): EnrollmentMode ADDE and AccessRights as Apple requires them', () => {
    const adde = (accessRights?: number) => profile({ mdm: { EnrollmentMode: 'ADDE', ...(accessRights === undefined ? {} : { AccessRights: accessRights }) } })
    expect(check(adde(ALL_ACCESS_RIGHTS), 'device')).toEqual([])
    expect(check(adde(1 | 16), 'device')).toEqual([])
    expect(errors(adde(), 'device')).toEqual(['the profile has no AccessRights, which device enrollment requires (the rights the server is granted): a device would cancel enrollment'])
    expect(errors(adde(0), 'device')).toEqual([`AccessRights is 0, not 1 to 8191 (Apple: "Don't set to '0'"): a device would cancel enrollment`])
    expect(errors(adde(8192), 'device')).toEqual([expect.stringMatching(/^AccessRights is 8192, not 1 to 8191/)])
    expect(errors(adde(2), 'device')).toEqual(['AccessRights 2 has 2 without 1: installing profiles (2) needs inspecting them (1), and a device would cancel enrollment'])
    expect(errors(adde(1 | 128), 'device')).toEqual(['AccessRights 129 has 128 without 64: installing provisioning profiles (128) needs inspecting them (64), and a device would cancel enrollment'])
    expect(errors(adde(ALL_ACCESS_RIGHTS), 'user')).toEqual([
      'com.apple.mdm: AccessRights is ignored under user enrollment on iOS',
      'EnrollmentMode is "ADDE" but discovery said mdm-byod (which needs BYOD): a device would cancel enrollment',
    ])
  })

  it('names a missing AssignedManagedAppleID, a dangling IdentityCertificateUUID and a topic that is not an MDM one', () => {
    expect(errors(profile({ mdm: { AssignedManagedAppleID: '' } }))).toEqual([expect.stringMatching(/no AssignedManagedAppleID, which user enrollment requires/)])
    expect(errors(profile({ mdm: { IdentityCertificateUUID: 'nope' } }))).toEqual([
      expect.stringMatching(/^com\.apple\.mdm: IdentityCertificateUUID is "nope", which does not match/),
      expect.stringMatching(/IdentityCertificateUUID does not name a SCEP or ACME payload/),
    ])
    expect(errors(profile({ mdm: { Topic: 'com.example.push' } }))).toEqual([expect.stringMatching(/does not start with com\.apple\.mgmt\./)])
  })

  it('plain http: an error for a public ServerURL, a warning on a loopback address', () => {
    expect(errors(profile({ mdm: { ServerURL: 'http://mdm.example.com/mdm/apple/mdm' } }))).toEqual(['com.apple.mdm: ServerURL is "http://mdm.example.com/mdm/apple/mdm", which does not match ^https://.*$'])
    const local = check(profile({ mdm: { ServerURL: 'http://localhost:8080/mdm/apple/mdm', Topic: 'com.apple.mgmt.External.00000000-0000-0000-0000-000000000000' } }))
    expect(local.map((f) => f.severity)).toEqual(['warning', 'warning'])
    expect(local.map((f) => f.rule).join('\n')).toMatch(/ServerURL is http:\/\/localhost:8080\/mdm\/apple\/mdm: plain http on a loopback address[\s\S]*placeholder/)
  })

  it('checks the SCEP payload a device generates its key from', () => {
    expect(errors(profile({ scep: { 'Key Type': 'EC' } }))).toEqual([expect.stringMatching(/devices generate RSA keys only/)])
    expect(errors(profile({ scep: { Keysize: 512 } }))).toEqual(['com.apple.security.scep: PayloadContent.Keysize is 512, not one of 1024, 2048, 4096'])
    expect(errors(profile({ scep: { Subject: [['CN', 'flat']] } }))).toEqual([expect.stringMatching(/^com\.apple\.security\.scep: PayloadContent\.Subject\[0\]\[0\] must be an array/), expect.stringMatching(/Subject\[0\]\[1\] must be an array/)])
    expect(errors(profile({ scep: { CAFingerprint: 'ab' } }))).toEqual(['com.apple.security.scep: PayloadContent.CAFingerprint must be data, not a string'])
  })

  it('counts com.apple.mdm payloads and duplicate PayloadUUIDs', () => {
    const p = profile()
    const payloads = p.PayloadContent as PlistDict[]
    expect(errors({ ...p, PayloadContent: [payloads[0]!] })).toEqual(['the profile has no com.apple.mdm payload: a device would cancel enrollment'])
    expect(errors({ ...p, PayloadContent: [payloads[0]!, { ...payloads[1]!, PayloadUUID: payloads[0]!.PayloadUUID! }] })).toEqual(expect.arrayContaining([expect.stringMatching(/is used twice/)]))
  })
})
