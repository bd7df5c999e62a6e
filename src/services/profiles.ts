/**
 * Enrollment profiles: the values of a new profile are taken from configuration once, written to an
 * enrollment_profiles record, and every profile (the first and any re-issue) is built from a record.
 * A device rejects an update whose ServerURL, CheckInURL, Topic, AssignedManagedAppleID or
 * EnrollmentMode differ from what it enrolled with (PROTOCOL.md section 6), so after the first issue
 * nothing here reads configuration or request headers for those values.
 */
import { createHash, randomUUID } from 'node:crypto'
import type { Config } from '../config/index.js'
import { signCms } from '../pki/cms.js'
import { hashSecret, newSecret } from '../pki/secrets.js'
import type { DeviceAttributes } from '../protocol/enroll-request.js'
import { parseUserIdentifier } from '../protocol/discovery.js'
import { buildPlist } from '../protocol/plist.js'
import { ALL_ACCESS_RIGHTS, buildEnrollmentProfile, type EnrollmentProfileSpec, type ScepSubject } from '../protocol/profile.js'
import type { ServerUrls } from '../protocol/urls.js'
import type { Client } from '../storage/database.js'
import { claimTokenForProfile, copyProfileRecord, type ProfileChallenge } from '../storage/profiles.js'
import type { AccessToken, EnrollmentProfile } from '../storage/types.js'
import type { ServerKeys } from './keys.js'

/**
 * Put into profiles while APNS_TOPIC is unset, so that a development server can complete an enrollment.
 * A device enrolled with it never receives pushes and cannot be moved to the real topic (Topic must not
 * change): it has to enroll again. The server warns at start while it is in use.
 */
export const PLACEHOLDER_TOPIC = 'com.apple.mgmt.External.00000000-0000-0000-0000-000000000000'

/** Supports device and user channels (macOS); must never be added or removed by a profile update. */
const SERVER_CAPABILITIES = ['com.apple.mdm.per-user-connections']
/** Check-in GetToken is served (Apple, "Get Token"); added to new profiles only, see ProfileDeps.maidTokens. */
export const TOKEN_CAPABILITY = 'com.apple.mdm.token'

export interface ProfileDeps {
  config: Config
  keys: ServerKeys
  urls: ServerUrls
  /** True while GetToken com.apple.maid is served (ABM connected, MAID_TOKENS): new records get TOKEN_CAPABILITY. */
  maidTokens?: () => Promise<boolean>
}

export interface IssuedProfile {
  record: EnrollmentProfile
  /** The CMS-signed profile (DER), as the device receives it. */
  signed: Buffer
}

/**
 * The device's Managed Apple Account (AssignedManagedAppleID), per MANAGED_APPLE_ID_SOURCE: `auto` takes
 * what the user typed on the device when it equals (case-insensitively) the IdP email, else the IdP
 * email; `email` always the IdP email; `user-identifier` always what was typed. Undefined when the
 * chosen source has no usable account name.
 */
export function assignedManagedAppleId(source: Config['enrollment']['managedAppleIdSource'], typed: string | null, email: string | null): string | undefined {
  const account = (v: string | null) => (v && !('problem' in parseUserIdentifier(v)) ? v : undefined)
  const t = account(typed)
  const e = account(email)
  switch (source) {
    case 'email':
      return e
    case 'user-identifier':
      return t
    case 'auto':
      return t && e && t.toLowerCase() === e.toLowerCase() ? t : e
  }
}

/**
 * Issues the first profile for `token`: claims the token (one profile per sign-in), stores the record
 * (values from configuration now) and its challenge, and signs the profile. Undefined when the token was
 * already claimed, revoked or its window closed in the meantime.
 */
export async function issueProfile(
  deps: ProfileDeps,
  db: Client,
  params: { token: AccessToken; assignedManagedAppleId: string; device: DeviceAttributes; enrollmentType: 'user' | 'device'; now: Date },
): Promise<IssuedProfile | undefined> {
  const { config, keys, urls } = deps
  const host = new URL(config.serverUrl).hostname
  const challenge = newSecret()
  const record = await claimTokenForProfile(
    db,
    params.token.id,
    params.now,
    {
      ...freshIdentity(),
      accessTokenId: params.token.id,
      userId: params.token.userId,
      teamId: params.token.teamId,
      // Stable across profiles and users: a later profile with this identifier replaces this one.
      payloadIdentifier: `${host.split('.').reverse().join('.')}.mdm-enrollment`,
      displayName: config.orgName,
      organization: config.orgName,
      serverUrl: urls.mdm,
      // Check-in and commands share ServerURL (PROTOCOL.md section 0); no separate CheckInURL.
      checkInUrl: null,
      topic: config.apnsTopic ?? PLACEHOLDER_TOPIC,
      assignedManagedAppleId: params.assignedManagedAppleId,
      // Fixed at the first issue like the other must-not-change keys: the team's type when the user signed in.
      enrollmentMode: params.enrollmentType === 'device' ? 'ADDE' : 'BYOD',
      accessRights: params.enrollmentType === 'device' ? ALL_ACCESS_RIGHTS : null,
      signMessage: true,
      checkOutWhenRemoved: true,
      serverCapabilities: (await deps.maidTokens?.()) ? [...SERVER_CAPABILITIES, TOKEN_CAPABILITY] : SERVER_CAPABILITIES,
      scepUrl: urls.scep,
      scepName: host,
      // What the device puts in its CSR; the SCEP CA issues from its own template regardless.
      scepSubject: [[['O', config.orgName]], [['CN', 'MDM device identity']]] satisfies ScepSubject,
      scepCaFingerprint: new Uint8Array(createHash('sha1').update(keys.scepCa.certificate.raw).digest()),
      deviceProduct: params.device.product ?? null,
      deviceVersion: params.device.version ?? null,
      deviceLanguage: params.device.language ?? null,
    },
    challengeFor(params.token, challenge, params.token.enrollUntil),
  )
  return record && sign(deps, record, challenge)
}

/**
 * A new profile for the same enrollment, built from the record of `profileId`: same identifiers and
 * must-not-change values whatever the configuration says now, fresh payload UUIDs and a fresh SCEP
 * challenge valid for ENROLLMENT_WINDOW. For profile updates sent over the command channel.
 */
export async function reissueProfile(deps: ProfileDeps, db: Client, profileId: string, now = new Date()): Promise<IssuedProfile> {
  const challenge = newSecret()
  const expiresAt = new Date(now.getTime() + deps.config.enrollmentWindowSeconds * 1000)
  const record = await copyProfileRecord(db, profileId, freshIdentity(), (r) => challengeFor({ id: r.accessTokenId, userId: r.userId, teamId: r.teamId }, challenge, expiresAt))
  return sign(deps, record, challenge)
}

/** Every profile gets new UUIDs: the device tells profiles apart by PayloadIdentifier, not UUID. */
function freshIdentity() {
  return { id: randomUUID(), payloadUuid: randomUUID(), mdmPayloadUuid: randomUUID(), scepPayloadUuid: randomUUID() }
}

function challengeFor(token: Pick<AccessToken, 'id' | 'userId' | 'teamId'>, challenge: string, expiresAt: Date): ProfileChallenge {
  return { challengeHash: hashSecret(challenge), accessTokenId: token.id, userId: token.userId, teamId: token.teamId, expiresAt }
}

/** Builds the profile from the record and its challenge, and signs it. */
function sign(deps: ProfileDeps, record: EnrollmentProfile, challenge: string): IssuedProfile {
  const content = Buffer.from(buildPlist(buildEnrollmentProfile(specFromRecord(record, challenge))), 'utf8')
  const signer = deps.keys.profileSigner
  const signed = signCms({ content, certificate: signer.certificate, privateKey: signer.privateKey, extraCertificates: signer.chain })
  return { record, signed }
}

export function specFromRecord(record: EnrollmentProfile, challenge: string): EnrollmentProfileSpec {
  if (record.enrollmentMode !== 'BYOD' && record.enrollmentMode !== 'ADDE') throw new Error(`enrollment profile ${record.id} has EnrollmentMode ${record.enrollmentMode}; only BYOD and ADDE are built`)
  return {
    payloadIdentifier: record.payloadIdentifier,
    payloadUuid: record.payloadUuid.toUpperCase(),
    mdmPayloadUuid: record.mdmPayloadUuid.toUpperCase(),
    scepPayloadUuid: record.scepPayloadUuid.toUpperCase(),
    displayName: record.displayName,
    organization: record.organization,
    mdm: {
      enrollmentMode: record.enrollmentMode,
      accessRights: record.accessRights,
      assignedManagedAppleId: record.assignedManagedAppleId,
      serverUrl: record.serverUrl,
      checkInUrl: record.checkInUrl,
      topic: record.topic,
      signMessage: record.signMessage,
      checkOutWhenRemoved: record.checkOutWhenRemoved,
      serverCapabilities: record.serverCapabilities,
    },
    scep: {
      url: record.scepUrl,
      name: record.scepName,
      subject: record.scepSubject as ScepSubject,
      challenge,
      caFingerprint: new Uint8Array(record.scepCaFingerprint),
    },
  }
}
