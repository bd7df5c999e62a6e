/**
 * The enrollment profile for account-driven user enrollment (PROTOCOL.md section 6): a `Configuration`
 * with one `com.apple.security.scep` payload (the device identity) and one `com.apple.mdm` payload.
 * A device silently cancels enrollment on one wrong key, so this writes exactly the keys listed here.
 * https://developer.apple.com/documentation/devicemanagement/toplevel
 * https://developer.apple.com/documentation/devicemanagement/mdm (apple/device-management mdm/profiles/com.apple.mdm.yaml)
 * https://developer.apple.com/documentation/devicemanagement/scep (mdm/profiles/com.apple.security.scep.yaml)
 */
import type { PlistDict } from './plist.js'

/** `[[["O", "Example"]], [["CN", "..."]]]`: one RDN per inner array, each an `[oid, value]` pair. */
export type ScepSubject = [oid: string, value: string][][]

/** Everything a profile is made of. Services fill it from an enrollment_profiles record. */
export interface EnrollmentProfileSpec {
  /** Top-level PayloadIdentifier; the payloads use `<it>.scep` and `<it>.mdm`. Stable across profiles. */
  payloadIdentifier: string
  /** Fresh for every profile issued. */
  payloadUuid: string
  mdmPayloadUuid: string
  scepPayloadUuid: string
  displayName: string
  organization: string
  mdm: {
    /**
     * `BYOD` (user enrollment) matches discovery's `mdm-byod`, `ADDE` (device enrollment) its `mdm-adde`;
     * a mismatch makes the device cancel.
     */
    enrollmentMode: 'BYOD' | 'ADDE'
    /** Device enrollment only: the rights the MDM server has (com.apple.mdm.yaml AccessRights); never with BYOD. */
    accessRights?: number | null
    assignedManagedAppleId: string
    serverUrl: string
    checkInUrl?: string | null
    /** `com.apple.mgmt.*`, the UID of the APNs push certificate. */
    topic: string
    signMessage: boolean
    checkOutWhenRemoved: boolean
    serverCapabilities: string[]
  }
  scep: {
    url: string
    name: string
    subject: ScepSubject
    /** One-time secret: put in the profile, stored only hashed. */
    challenge: string
    /** SHA-1 of the CA certificate's DER: the hash Apple's SCEP client compares (it takes SHA-1 or MD5). */
    caFingerprint: Uint8Array
  }
}

/** RSA 2048: the SCEP CA refuses smaller keys (SECURITY.md row 19). */
export const SCEP_KEY_SIZE = 2048
/** 1 (signing) | 4 (encryption): the identity signs check-ins (Mdm-Signature) and TLS. */
export const SCEP_KEY_USAGE = 5

/** The keys every payload and the profile itself carry. */
function payloadKeys(type: string, identifier: string, uuid: string, displayName: string): PlistDict {
  return { PayloadType: type, PayloadVersion: 1, PayloadIdentifier: identifier, PayloadUUID: uuid, PayloadDisplayName: displayName }
}

/**
 * Every right of com.apple.mdm.yaml's AccessRights (1 | 2 | ... | 4096): the server of an
 * organisation-owned device may inspect and install profiles, lock, erase, query and manage apps.
 */
export const ALL_ACCESS_RIGHTS = 8191

export function buildEnrollmentProfile(spec: EnrollmentProfileSpec): PlistDict {
  const scep: PlistDict = {
    ...payloadKeys('com.apple.security.scep', `${spec.payloadIdentifier}.scep`, spec.scepPayloadUuid, 'Device identity'),
    PayloadContent: {
      URL: spec.scep.url,
      Name: spec.scep.name,
      Subject: spec.scep.subject,
      Challenge: spec.scep.challenge,
      Keysize: SCEP_KEY_SIZE,
      'Key Type': 'RSA',
      'Key Usage': SCEP_KEY_USAGE,
      CAFingerprint: spec.scep.caFingerprint,
      Retries: 3,
      RetryDelay: 10,
    },
  }
  const m = spec.mdm
  const mdm: PlistDict = {
    ...payloadKeys('com.apple.mdm', `${spec.payloadIdentifier}.mdm`, spec.mdmPayloadUuid, 'Device management'),
    EnrollmentMode: m.enrollmentMode,
    AssignedManagedAppleID: m.assignedManagedAppleId,
    // AccessRights must stay absent with BYOD: the device cancels when it is present. Device enrollment
    // carries the rights the server is granted.
    ...(m.enrollmentMode === 'ADDE' && m.accessRights ? { AccessRights: m.accessRights } : {}),
    IdentityCertificateUUID: spec.scepPayloadUuid,
    Topic: m.topic,
    ServerURL: m.serverUrl,
    ...(m.checkInUrl ? { CheckInURL: m.checkInUrl } : {}),
    SignMessage: m.signMessage,
    CheckOutWhenRemoved: m.checkOutWhenRemoved,
    ServerCapabilities: m.serverCapabilities,
  }
  // No PayloadRemovalDisallowed: user enrollment forbids it, and account-driven device enrollment lets the
  // user remove the enrollment as well.
  return {
    ...payloadKeys('Configuration', spec.payloadIdentifier, spec.payloadUuid, spec.displayName),
    PayloadOrganization: spec.organization,
    PayloadContent: [scep, mdm],
  }
}
