/**
 * The section-6 rules of an enrollment profile (src/protocol/profile-rules.ts): the profile this server
 * builds passes; each broken rule is named with what a device does about it.
 */
import { describe, expect, it } from 'vitest'
import type { PlistDict } from '../../src/protocol/plist.js'
import { buildEnrollmentProfile, type EnrollmentProfileSpec } from '../../src/protocol/profile.js'
import { checkEnrollmentProfile } from '../../src/protocol/profile-rules.js'

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

const errors = (p: PlistDict, version?: string) => checkEnrollmentProfile(p, { version }).filter((f) => f.severity === 'error').map((f) => f.rule)

describe('enrollment profile rules (PROTOCOL.md section 6)', () => {
  it('the profile this server builds breaks none', () => {
    expect(checkEnrollmentProfile(profile())).toEqual([])
  })

  it('names AccessRights, PayloadRemovalDisallowed and a mode that does not match discovery', () => {
    expect(errors(profile({ mdm: { AccessRights: 8191 } }))).toEqual(['the profile has AccessRights: a device would cancel enrollment (user enrollment forbids them)'])
    expect(errors(profile({ top: { PayloadRemovalDisallowed: true } }))).toEqual(['the profile has PayloadRemovalDisallowed, which user enrollment forbids: a device would cancel enrollment'])
    expect(errors(profile({ mdm: { EnrollmentMode: 'ADDE' } }))).toEqual(['EnrollmentMode is "ADDE" but discovery said mdm-byod (which needs BYOD): a device would cancel enrollment'])
    expect(errors(profile(), 'mdm-adde')).toEqual(['EnrollmentMode is "BYOD" but discovery said mdm-adde (which needs ADDE): a device would cancel enrollment'])
  })

  it('names a missing AssignedManagedAppleID, a dangling IdentityCertificateUUID and a topic that is not an MDM one', () => {
    expect(errors(profile({ mdm: { AssignedManagedAppleID: '' } }))).toEqual([expect.stringMatching(/no AssignedManagedAppleID, which user enrollment requires/)])
    expect(errors(profile({ mdm: { IdentityCertificateUUID: 'nope' } }))).toEqual([expect.stringMatching(/IdentityCertificateUUID does not name a SCEP or ACME payload/)])
    expect(errors(profile({ mdm: { Topic: 'com.example.push' } }))).toEqual([expect.stringMatching(/does not start with com\.apple\.mgmt\./)])
  })

  it('plain http: an error for a public ServerURL, a warning on a loopback address', () => {
    expect(errors(profile({ mdm: { ServerURL: 'http://mdm.example.com/mdm/apple/mdm' } }))).toEqual(['ServerURL is http://mdm.example.com/mdm/apple/mdm, not https: a device would cancel enrollment'])
    const local = checkEnrollmentProfile(profile({ mdm: { ServerURL: 'http://localhost:8080/mdm/apple/mdm', Topic: 'com.apple.mgmt.External.00000000-0000-0000-0000-000000000000' } }))
    expect(local.map((f) => f.severity)).toEqual(['warning', 'warning'])
    expect(local.map((f) => f.rule).join('\n')).toMatch(/placeholder[\s\S]*plain http on a loopback address/)
  })

  it('checks the SCEP payload a device generates its key from', () => {
    expect(errors(profile({ scep: { 'Key Type': 'EC' } }))).toEqual([expect.stringMatching(/devices generate RSA keys only/)])
    expect(errors(profile({ scep: { Keysize: 512 } }))).toEqual([expect.stringMatching(/Keysize 512/)])
    expect(errors(profile({ scep: { Subject: [['CN', 'flat']] } }))).toEqual([expect.stringMatching(/Subject is not an array of RDNs/)])
    expect(errors(profile({ scep: { CAFingerprint: 'ab' } }))).toEqual([expect.stringMatching(/CAFingerprint is not data/)])
  })

  it('counts com.apple.mdm payloads and duplicate PayloadUUIDs', () => {
    const p = profile()
    const payloads = p.PayloadContent as PlistDict[]
    expect(errors({ ...p, PayloadContent: [payloads[0]!] })).toEqual([expect.stringMatching(/0 com\.apple\.mdm payloads instead of one/)])
    expect(errors({ ...p, PayloadContent: [payloads[0]!, { ...payloads[1]!, PayloadUUID: payloads[0]!.PayloadUUID! }] })).toEqual(expect.arrayContaining([expect.stringMatching(/is used twice/)]))
  })
})
