/**
 * The one way to check a configuration profile: `checkProfile`, for one platform and one kind of
 * account-driven enrollment, used by the device simulator (src/device/profile.ts: what a device would do
 * with the profile it was served) and by the tests. It is Apple's schema (profile-schema.ts, derived from
 * github.com/apple/device-management) plus the rules the schema cannot state, from Apple's documentation
 * and PROTOCOL.md section 6; each rule is checked in one of the two places only.
 *
 * A device that meets a broken rule cancels enrollment, usually with a generic message; each finding
 * says which rule and what the device would do. `warning`s do not stop a device but are worth knowing
 * (a placeholder push topic, plain http on a loopback address, no CheckOut on removal, a key a platform
 * ignores: profile-schema.ts says which schema findings are warnings and why).
 * https://developer.apple.com/documentation/devicemanagement/mdm
 * https://developer.apple.com/documentation/devicemanagement/scep
 */
import { ADDE_VERSION, BYOD_VERSION } from './discovery.js'
import { isDict, type PlistDict, type PlistValue } from './plist.js'
import { schemaFindings, type ProfileFinding, type ProfileTarget } from './profile-schema.js'

export { isLoopback, type ProfileFinding, type ProfileTarget } from './profile-schema.js'

export type Enrollment = ProfileTarget['enrollment']

export interface CheckTarget extends ProfileTarget {
  /**
   * `enrollment` (default): the profile the enroll endpoint serves, which must be an enrollment profile
   * (its com.apple.mdm payload, identity, mode). `other`: any other profile a device installs (Enrollment
   * SSO, InstallProfile): the schema and the rules every profile obeys.
   */
  purpose?: 'enrollment' | 'other'
}

/**
 * The discovery `Version` of each enrollment, and the `EnrollmentMode` it needs: not in the schema (its
 * rangelist has both values) but Apple's account-driven enrollment documentation (PROTOCOL.md sections 1
 * and 6): the mode must match discovery's Version or the device cancels.
 */
export const ENROLLMENT = {
  user: { version: BYOD_VERSION, mode: 'BYOD', name: 'user enrollment' },
  device: { version: ADDE_VERSION, mode: 'ADDE', name: 'account-driven device enrollment' },
} as const

/** The enrollment a discovery `Version` asks for; undefined for a Version this server does not know. */
export function enrollmentOfVersion(version: string): Enrollment | undefined {
  return version === ADDE_VERSION ? 'device' : version === BYOD_VERSION ? 'user' : undefined
}

/**
 * AccessRights bits (com.apple.mdm.yaml AccessRights, 1 to 4096). Its description also says "Don't set to
 * '0'. Specify '1' if you specify '2'. Specify '64' if you specify '128'", prose the derivation does not read.
 */
const ACCESS_RIGHTS_MAX = 8191
const ACCESS_RIGHTS_NEEDS = [
  [2, 1, 'installing profiles (2) needs inspecting them (1)'],
  [128, 64, 'installing provisioning profiles (128) needs inspecting them (64)'],
] as const

const IDENTITY_PAYLOADS = ['com.apple.security.scep', 'com.apple.security.acme']

/** A topic whose UUID is all zeros: a server's stand-in while no push certificate is configured. */
const PLACEHOLDER_TOPIC = /0{8}-0{4}-0{4}-0{4}-0{12}$/

/**
 * Every rule `profile` breaks for `target` (a device of that platform, enrolling that way), errors first;
 * no error means a device would install it. The profile is the plist inside the CMS signature.
 */
export function checkProfile(profile: PlistDict, target: CheckTarget): ProfileFinding[] {
  return sorted([...schemaFindings(profile, target), ...enrollmentFindings(profile, target)])
}

/** `checkProfile`'s errors only, as sentences. */
export function profileErrors(profile: PlistDict, target: CheckTarget): string[] {
  return checkProfile(profile, target)
    .filter((f) => f.severity === 'error')
    .map((f) => f.rule)
}

/**
 * What a device checks beyond the schema: the profile as an enrollment profile (one MDM payload, its
 * identity, its mode, its topic, AccessRights for its kind of enrollment) and the SCEP keys a device
 * generates from. Types, required keys, rangelists and formats are the schema's, not repeated here.
 */
function enrollmentFindings(profile: PlistDict, target: CheckTarget): ProfileFinding[] {
  const findings: ProfileFinding[] = []
  const error = (rule: string) => findings.push({ severity: 'error', rule })
  const warning = (rule: string) => findings.push({ severity: 'warning', rule })
  const payloads = Array.isArray(profile.PayloadContent) ? profile.PayloadContent.filter(isDict) : []

  const uuids = new Set<PlistValue | undefined>([profile.PayloadUUID])
  for (const p of payloads) {
    if (typeof p.PayloadUUID !== 'string') continue
    if (uuids.has(p.PayloadUUID)) error(`the PayloadUUID ${p.PayloadUUID} is used twice: a device would not install the profile`)
    uuids.add(p.PayloadUUID)
  }
  if (target.purpose === 'other') return findings

  // Two or more are the schema's ("allows one"); none is a profile that is no enrollment profile.
  const mdm = payloads.find((p) => p.PayloadType === 'com.apple.mdm')
  if (!mdm) {
    error('the profile has no com.apple.mdm payload: a device would cancel enrollment')
    return findings
  }
  const wanted = ENROLLMENT[target.enrollment]
  if (mdm.EnrollmentMode !== undefined && mdm.EnrollmentMode !== wanted.mode) {
    error(`EnrollmentMode is ${describe(mdm.EnrollmentMode)} but discovery said ${wanted.version} (which needs ${wanted.mode}): a device would cancel enrollment`)
  }
  if (!nonEmptyString(mdm.AssignedManagedAppleID)) {
    error(`the com.apple.mdm payload has no AssignedManagedAppleID, which ${wanted.name} requires (the account the user signs in to next): a device would cancel enrollment`)
  }
  if (target.enrollment === 'device') checkAccessRights(mdm.AccessRights, error)

  if (nonEmptyString(mdm.IdentityCertificateUUID)) {
    const identity = payloads.find((p) => p.PayloadUUID === mdm.IdentityCertificateUUID)
    if (!identity || !IDENTITY_PAYLOADS.includes(identity.PayloadType as string)) {
      error('IdentityCertificateUUID does not name a SCEP or ACME payload of the profile: a device would cancel enrollment')
    } else if (identity.PayloadType === 'com.apple.security.scep' && isDict(identity.PayloadContent)) {
      checkScep(identity.PayloadContent, error, warning)
    }
  }

  if (nonEmptyString(mdm.Topic)) {
    const topic = mdm.Topic as string
    if (!topic.startsWith('com.apple.mgmt.')) error(`the Topic ${topic} does not start with com.apple.mgmt.: it is not an MDM push certificate's topic, and a device would cancel enrollment`)
    else if (PLACEHOLDER_TOPIC.test(topic)) warning(`the Topic ${topic} is a placeholder (no push certificate configured): a real device would enroll but never receive a push, and must enroll again once the topic is set`)
  }
  if (mdm.SignMessage !== true) warning('SignMessage is not true: the device will not sign its check-ins (Mdm-Signature), and a server that identifies devices by it refuses them')
  if (mdm.CheckOutWhenRemoved !== true) warning('CheckOutWhenRemoved is not true: the server will not hear when the user removes the enrollment')
  return findings
}

/**
 * Device enrollment: the rights the server gets. Apple's MDM payload reference has AccessRights required
 * outside user enrollment (the schema's `presence: optional` covers user enrollment, which ignores it),
 * never 0, only the documented bits, and the pairs its description names.
 */
function checkAccessRights(value: PlistValue | undefined, error: (r: string) => void): void {
  if (value === undefined) return error('the profile has no AccessRights, which device enrollment requires (the rights the server is granted): a device would cancel enrollment')
  if (typeof value !== 'number' || !Number.isInteger(value)) return // the schema's: "must be an integer"
  if (value <= 0 || value > ACCESS_RIGHTS_MAX) return error(`AccessRights is ${value}, not 1 to ${ACCESS_RIGHTS_MAX} (Apple: "Don't set to '0'"): a device would cancel enrollment`)
  for (const [bit, needs, why] of ACCESS_RIGHTS_NEEDS) {
    if ((value & bit) !== 0 && (value & needs) === 0) error(`AccessRights ${value} has ${bit} without ${needs}: ${why}, and a device would cancel enrollment`)
  }
}

/** What the device generates its key from; URL, Keysize, Subject and CAFingerprint shapes are the schema's. */
function checkScep(c: PlistDict, error: (r: string) => void, warning: (r: string) => void): void {
  if (nonEmptyString(c.URL) && !isAbsoluteUrl(c.URL as string)) error(`the SCEP URL ${c.URL as string} is not an absolute URL: a device could not get its identity`)
  if (!nonEmptyString(c.Challenge)) warning('the SCEP payload has no Challenge: a CA that requires one refuses the device')
  if (c['Key Type'] !== undefined && c['Key Type'] !== 'RSA') error(`the SCEP Key Type is ${describe(c['Key Type'])}: devices generate RSA keys only (the key is "Key Type", with the space)`)
  if (typeof c['Key Usage'] === 'number' && ![1, 4, 5].includes(c['Key Usage'])) warning(`the SCEP Key Usage ${c['Key Usage']} is not 1, 4 or 5: the identity must sign (Mdm-Signature)`)
  else if (c['Key Usage'] === 4) warning('the SCEP Key Usage is 4 (encryption only): the identity must sign check-ins')
}

function isAbsoluteUrl(value: string): boolean {
  try {
    new URL(value)
    return true
  } catch {
    return false
  }
}

function nonEmptyString(value: PlistValue | undefined): boolean {
  return typeof value === 'string' && value !== ''
}

function describe(value: PlistValue | undefined): string {
  if (value === undefined) return 'missing'
  return typeof value === 'string' ? JSON.stringify(value) : String(value)
}

function sorted(findings: ProfileFinding[]): ProfileFinding[] {
  return [...findings.filter((f) => f.severity === 'error'), ...findings.filter((f) => f.severity === 'warning')]
}
