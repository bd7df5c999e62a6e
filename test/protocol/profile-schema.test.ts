import { execFileSync } from 'node:child_process'
import { createHash, randomUUID } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { beforeAll, describe, expect, it } from 'vitest'
import { buildEssoProfile } from '../../src/protocol/esso.js'
import { PLATFORMS, type Platform } from '../../src/protocol/platform.js'
import { buildPlist, parsePlistDict, type PlistDict } from '../../src/protocol/plist.js'
import { ALL_ACCESS_RIGHTS, buildEnrollmentProfile, type EnrollmentProfileSpec } from '../../src/protocol/profile.js'
import { checkProfile, profileErrors, type CheckTarget } from '../../src/protocol/profile-rules.js'
import { contextFor, createSigner, credentialPayload, redirectPayload, settingsFor, type Signer } from './esso-fixtures.js'

// Expected messages below restate facts of Apple's schema (release iOS 18.1 / macOS 15.1), each with the
// file it comes from under mdm/profiles/; the tests check that the derived rules reproduce them.

/** An enrollment profile spec as services/profiles.ts fills one, for user (BYOD) or device (ADDE) enrollment. */
function spec(enrollment: 'user' | 'device'): EnrollmentProfileSpec {
  return {
    payloadIdentifier: 'test.example.mdm.mdm-enrollment',
    payloadUuid: randomUUID(),
    mdmPayloadUuid: randomUUID(),
    scepPayloadUuid: randomUUID(),
    displayName: 'Example Org',
    organization: 'Example Org',
    mdm: {
      enrollmentMode: enrollment === 'device' ? 'ADDE' : 'BYOD',
      accessRights: enrollment === 'device' ? ALL_ACCESS_RIGHTS : null,
      assignedManagedAppleId: 'alice@example.com',
      serverUrl: 'https://mdm.example.test/api/mdm/apple/mdm',
      checkInUrl: null,
      topic: 'com.apple.mgmt.External.2b7ed4c4-0000-4000-8000-000000000001',
      signMessage: true,
      checkOutWhenRemoved: true,
      serverCapabilities: ['com.apple.mdm.per-user-connections'],
    },
    scep: {
      url: 'https://mdm.example.test/api/mdm/apple/scep',
      name: 'mdm.example.test',
      subject: [[['O', 'Example Org']], [['CN', 'MDM device identity']]],
      challenge: 'a-one-time-challenge',
      caFingerprint: new Uint8Array(createHash('sha1').update('ca').digest()),
    },
  }
}

/** What the device reads: the profile through an XML plist and back (Uint8Array, tuples become arrays). */
function asDeviceReadsIt(profile: PlistDict): PlistDict {
  return parsePlistDict(buildPlist(profile))
}

const byod = () => asDeviceReadsIt(buildEnrollmentProfile(spec('user')))
const adde = () => asDeviceReadsIt(buildEnrollmentProfile(spec('device')))

function payload(profile: PlistDict, type: string): PlistDict {
  return (profile.PayloadContent as PlistDict[]).find((p) => p.PayloadType === type)!
}

const user = (platform: Platform): CheckTarget => ({ platform, enrollment: 'user' })
const device = (platform: Platform): CheckTarget => ({ platform, enrollment: 'device' })
/** A profile that is not the enrollment profile (Enrollment SSO's): no com.apple.mdm payload expected. */
const other = (target: CheckTarget): CheckTarget => ({ ...target, purpose: 'other' })

// The one profile checker (profile-rules.ts) reports the schema's findings and its own; these tests are
// about the schema's. Errors are what a device cancels on; warnings are kept apart.
const profileSchemaProblems = profileErrors
const warnings = (profile: PlistDict, target: CheckTarget) => checkProfile(profile, target).filter((f) => f.severity === 'warning').map((f) => f.rule)

let signer: Signer
beforeAll(async () => {
  signer = await createSigner()
})

describe('the profiles the server builds', () => {
  it.each(PLATFORMS)('the BYOD enrollment profile has no problem on %s under user enrollment', (platform) => {
    expect(profileSchemaProblems(buildEnrollmentProfile(spec('user')), user(platform))).toEqual([])
    expect(profileSchemaProblems(byod(), user(platform))).toEqual([])
  })

  it.each(PLATFORMS)('the ADDE enrollment profile has no problem on %s under device enrollment', (platform) => {
    expect(profileSchemaProblems(buildEnrollmentProfile(spec('device')), device(platform))).toEqual([])
    expect(profileSchemaProblems(adde(), device(platform))).toEqual([])
  })

  it.each(['iOS', 'visionOS'] as const)('the Enrollment SSO profile has no problem on %s under either enrollment', (platform) => {
    // ESSO exists on iOS and visionOS only (PROTOCOL.md section 5). TeamIdentifier is left out of the
    // Redirect payload here: the next test shows why.
    const { TeamIdentifier: _, ...redirect } = redirectPayload
    const profile = asDeviceReadsIt(buildEssoProfile(settingsFor(signer, { ssoPayloads: [redirect, credentialPayload] }), contextFor(signer)))
    expect(checkProfile(profile, other(user(platform)))).toEqual([])
    expect(checkProfile(profile, other(device(platform)))).toEqual([])
  })

  it('warns of TeamIdentifier in an extensible SSO payload on iOS and visionOS, which ignore it: not an error', () => {
    // com.apple.extensiblesso.yaml: TeamIdentifier iOS and visionOS introduced n/a, "This key is required on
    // macOS and ignored elsewhere." The device drops it (esso-rules.ts accepts it too); the payload is an
    // administrator's (ESSO_SSO_PAYLOADS), not the server's.
    const profile = asDeviceReadsIt(buildEssoProfile(settingsFor(signer, { ssoPayloads: [redirectPayload] }), contextFor(signer)))
    const ignored = (os: string) => `com.apple.extensiblesso: TeamIdentifier is ignored on ${os}; Apple's schema: "This key is required on macOS and ignored elsewhere."`
    for (const os of ['iOS', 'visionOS'] as const) {
      expect(profileSchemaProblems(profile, other(user(os)))).toEqual([])
      expect(warnings(profile, other(user(os)))).toEqual([ignored(os)])
    }
    expect(checkProfile(profile, other(user('macOS')))).toEqual([])
    // A key that is n/a on a platform without that sentence stays an error (PlatformSSO on iOS, below).
  })
})

describe('one problem per rule', () => {
  it('a wrong type', () => {
    // com.apple.mdm.yaml: AccessRights <integer>; com.apple.security.scep.yaml: PayloadContent <dictionary>.
    const profile = adde()
    payload(profile, 'com.apple.mdm').AccessRights = String(ALL_ACCESS_RIGHTS)
    expect(profileSchemaProblems(profile, device('iOS'))).toEqual(['com.apple.mdm: AccessRights must be an integer, not a string'])
    const scep = adde()
    payload(scep, 'com.apple.security.scep').PayloadContent = ['https://mdm.example.test/scep']
    expect(profileSchemaProblems(scep, device('iOS'))).toEqual(['com.apple.security.scep: PayloadContent must be a dictionary, not an array'])
  })

  it('a missing required key, in a payload, nested, and at the top level', () => {
    // com.apple.mdm.yaml: Topic presence required; scep: PayloadContent.URL required; TopLevel: PayloadUUID required.
    const profile = byod()
    delete payload(profile, 'com.apple.mdm').Topic
    delete (payload(profile, 'com.apple.security.scep').PayloadContent as PlistDict).URL
    delete profile.PayloadUUID
    expect(profileSchemaProblems(profile, user('macOS'))).toEqual([
      'Configuration: PayloadUUID is missing (required)',
      'com.apple.security.scep: PayloadContent.URL is missing (required)',
      'com.apple.mdm: Topic is missing (required)',
    ])
  })

  it('EnrollmentMode missing: the schema requires it for account-driven enrollment in its description only', () => {
    // com.apple.mdm.yaml EnrollmentMode: presence optional, content "Required for account-driven enrollment."
    const profile = byod()
    delete payload(profile, 'com.apple.mdm').EnrollmentMode
    expect(profileSchemaProblems(profile, user('iOS'))).toEqual(['com.apple.mdm: EnrollmentMode is missing; Apple\'s schema: "Required for account-driven enrollment."'])
  })

  it('a value outside the rangelist', () => {
    // scep: Keysize rangelist 1024, 2048, 4096; mdm: EnrollmentMode rangelist BYOD, ADDE; ServerCapabilities
    // items rangelist com.apple.mdm.per-user-connections, com.apple.mdm.bootstraptoken, com.apple.mdm.token.
    const profile = adde()
    ;(payload(profile, 'com.apple.security.scep').PayloadContent as PlistDict).Keysize = 3072
    payload(profile, 'com.apple.mdm').ServerCapabilities = ['com.apple.mdm.per-user-connections', 'com.example.push']
    expect(profileSchemaProblems(profile, device('macOS'))).toEqual([
      'com.apple.security.scep: PayloadContent.Keysize is 3072, not one of 1024, 2048, 4096',
      'com.apple.mdm: ServerCapabilities[1] is "com.example.push", not one of com.apple.mdm.per-user-connections, com.apple.mdm.bootstraptoken, com.apple.mdm.token',
    ])
    const mode = adde()
    payload(mode, 'com.apple.mdm').EnrollmentMode = 'DEP'
    expect(profileSchemaProblems(mode, device('iOS'))).toEqual([
      'com.apple.mdm: EnrollmentMode is "DEP", not one of BYOD, ADDE',
      'EnrollmentMode is "DEP" but discovery said mdm-adde (which needs ADDE): a device would cancel enrollment',
    ])
  })

  it('EnrollmentMode of the other enrollment', () => {
    expect(profileSchemaProblems(byod(), device('iOS'))).toEqual([
      'EnrollmentMode is "BYOD" but discovery said mdm-adde (which needs ADDE): a device would cancel enrollment',
      'the profile has no AccessRights, which device enrollment requires (the rights the server is granted): a device would cancel enrollment',
    ])
    expect(profileSchemaProblems(adde(), user('visionOS'))).toContain('EnrollmentMode is "ADDE" but discovery said mdm-byod (which needs BYOD): a device would cancel enrollment')
  })

  it.each(PLATFORMS)('AccessRights in a BYOD profile on %s', (platform) => {
    // com.apple.mdm.yaml: AccessRights userenrollment mode ignored on iOS, macOS and visionOS; PROTOCOL.md
    // section 6: the device cancels a BYOD enrollment that has it.
    const profile = byod()
    payload(profile, 'com.apple.mdm').AccessRights = ALL_ACCESS_RIGHTS
    expect(profileSchemaProblems(profile, user(platform))).toEqual([`com.apple.mdm: AccessRights is ignored under user enrollment on ${platform}`])
  })

  it('an unknown key, in a payload and nested', () => {
    const profile = byod()
    payload(profile, 'com.apple.mdm').EnrollmentProfileVersion = 2
    ;(payload(profile, 'com.apple.security.scep').PayloadContent as PlistDict).Algorithm = 'ECDSA'
    profile.PayloadRemovable = true
    expect(profileSchemaProblems(profile, user('iOS'))).toEqual([
      "Configuration: PayloadRemovable is not a key in Apple's schema (mdm/profiles/TopLevel.yaml)",
      "com.apple.security.scep: PayloadContent.Algorithm is not a key in Apple's schema (mdm/profiles/com.apple.security.scep.yaml)",
      "com.apple.mdm: EnrollmentProfileVersion is not a key in Apple's schema (mdm/profiles/com.apple.mdm.yaml)",
    ])
  })

  it('a key the platform does not have', () => {
    // com.apple.mdm.yaml: RequiredAppIDForMDM macOS introduced n/a; TopLevel: PayloadRemovalDisallowed visionOS n/a.
    const profile = adde()
    payload(profile, 'com.apple.mdm').RequiredAppIDForMDM = 361309726
    expect(profileSchemaProblems(profile, device('macOS'))).toEqual(['com.apple.mdm: RequiredAppIDForMDM is not available on macOS'])
    expect(profileSchemaProblems(profile, device('iOS'))).toEqual([])
    const removal = adde()
    removal.PayloadRemovalDisallowed = false
    expect(profileSchemaProblems(removal, device('visionOS'))).toEqual(['Configuration: PayloadRemovalDisallowed is not available on visionOS'])
  })

  it('PayloadRemovalDisallowed: forbidden under user enrollment and supervised-only on iOS, free on macOS', () => {
    // TopLevel.yaml PayloadRemovalDisallowed: iOS supervised true, userenrollment forbidden; no macOS entry.
    const profile = byod()
    profile.PayloadRemovalDisallowed = true
    expect(profileSchemaProblems(profile, user('iOS'))).toEqual([
      'Configuration: PayloadRemovalDisallowed is forbidden under user enrollment on iOS',
      'Configuration: PayloadRemovalDisallowed requires a supervised device on iOS; user enrollment is never supervised',
    ])
    expect(profileSchemaProblems(profile, user('macOS'))).toEqual([])
    const device_ = adde()
    device_.PayloadRemovalDisallowed = true
    expect(profileSchemaProblems(device_, device('iOS'))).toEqual([
      'Configuration: PayloadRemovalDisallowed requires a supervised device on iOS; account-driven device enrollment does not supervise it',
    ])
    // A Mac enrolled by account-driven device enrollment is supervised (PROVENANCE.md); the schema has no macOS rule anyway.
    expect(profileSchemaProblems(device_, device('macOS'))).toEqual([])
  })

  it('a key only for user enrollment in a device enrollment profile', () => {
    // com.apple.mdm.yaml ManagedAppleID: iOS and macOS userenrollment mode required, visionOS n/a.
    const profile = adde()
    payload(profile, 'com.apple.mdm').ManagedAppleID = 'alice@example.com'
    expect(profileSchemaProblems(profile, device('iOS'))).toEqual(['com.apple.mdm: ManagedAppleID is only for user enrollment on iOS (userenrollment mode required)'])
    expect(profileSchemaProblems(profile, device('visionOS'))).toEqual(['com.apple.mdm: ManagedAppleID is not available on visionOS'])
  })

  it('a value that does not match the format', () => {
    // com.apple.mdm.yaml ServerURL format ^https://.*$.
    const profile = byod()
    payload(profile, 'com.apple.mdm').ServerURL = 'http://mdm.example.test/mdm'
    expect(profileSchemaProblems(profile, user('iOS'))).toEqual(['com.apple.mdm: ServerURL is "http://mdm.example.test/mdm", which does not match ^https://.*$'])
  })

  it('a SCEP subject pair that is not a pair', () => {
    // scep: Subject items are arrays of arrays of strings with repetition min 2, max 2.
    const profile = byod()
    ;(payload(profile, 'com.apple.security.scep').PayloadContent as PlistDict).Subject = [[['CN']], [['O', 'Example', 'extra']]]
    expect(profileSchemaProblems(profile, user('iOS'))).toEqual([
      "com.apple.security.scep: PayloadContent.Subject[0][0] has 1 item; Apple's schema wants 2",
      "com.apple.security.scep: PayloadContent.Subject[1][0] has 3 items; Apple's schema wants 2",
    ])
  })

  it('a value below the range', () => {
    // com.apple.extensiblesso.yaml PlatformSSO (macOS 14): LoginFrequency range min 3600.
    const profile = byod()
    const sso: PlistDict = { ...credentialPayload, PayloadIdentifier: 'test.sso', PayloadUUID: randomUUID(), PayloadVersion: 1, TeamIdentifier: 'ABCDE12345', PlatformSSO: { LoginFrequency: 60 } }
    ;(profile.PayloadContent as PlistDict[]).push(sso)
    expect(profileSchemaProblems(profile, user('macOS'))).toEqual(['com.apple.extensiblesso: PlatformSSO.LoginFrequency is 60, below the minimum 3600'])
    expect(profileSchemaProblems(profile, user('iOS'))).toEqual(['com.apple.extensiblesso: PlatformSSO is not available on iOS'])
  })

  it('a payload type the rules do not cover, a missing PayloadType, and two MDM payloads', () => {
    // com.apple.mdm.yaml: multiple false on iOS.
    const profile = byod()
    const content = profile.PayloadContent as PlistDict[]
    content.push({ PayloadType: 'com.apple.wifi.managed', PayloadIdentifier: 'test.wifi', PayloadUUID: randomUUID(), PayloadVersion: 1, SSID_STR: 'Example' })
    content.push({ PayloadIdentifier: 'test.untyped', PayloadUUID: randomUUID(), PayloadVersion: 1 })
    content.push({ ...payload(profile, 'com.apple.mdm'), PayloadUUID: randomUUID() })
    const problems = profileSchemaProblems(profile, user('iOS'))
    expect(problems).toContainEqual(expect.stringMatching(/^Configuration: PayloadContent\[2\]: unknown payload type com\.apple\.wifi\.managed \(the rules derived from Apple's schema cover .*com\.apple\.mdm/))
    expect(problems).toContain('Configuration: PayloadContent[3] has no PayloadType string')
    expect(problems).toContain("com.apple.mdm appears 2 times; Apple's schema allows one on iOS")
    expect(problems).toHaveLength(3)
  })

  it('a wrong value at the top level', () => {
    // TopLevel.yaml: PayloadType rangelist Configuration, PayloadVersion rangelist 1.
    const profile = byod()
    profile.PayloadType = 'Profile'
    profile.PayloadVersion = 2
    expect(profileSchemaProblems(profile, user('iOS'))).toEqual([
      'Configuration: PayloadType is "Profile", not one of Configuration',
      'Configuration: PayloadVersion is 2, not one of 1',
    ])
  })
})

describe('derivation', () => {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
  const schema = process.env.APPLE_SCHEMA_DIR ?? path.resolve(root, '../shared/apple-schema')

  // The only test here that reads the schema: users' clones do not have it, and nothing else may need it.
  it.skipIf(!existsSync(schema))('the committed profile rules are what the script derives from the schema', () => {
    const out = mkdtempSync(path.join(tmpdir(), 'apple-schema-'))
    try {
      execFileSync(process.execPath, [path.join(root, 'scripts/derive-apple-schema.mjs'), schema, '--out-dir', out], { stdio: 'pipe' })
      expect(readFileSync(path.join(out, 'profiles.json'), 'utf8')).toBe(readFileSync(path.join(root, 'src/protocol/apple/profiles.json'), 'utf8'))
    } finally {
      rmSync(out, { recursive: true, force: true })
    }
  })
})
