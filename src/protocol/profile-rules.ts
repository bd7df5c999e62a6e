/**
 * The rules an enrollment profile must obey for a device to install it (PROTOCOL.md section 6), checked
 * on the profile as a device receives it: the reading side of profile.ts. Pure, so that the device
 * simulator (src/device) and a configuration doctor share it.
 *
 * A device that meets a broken rule cancels enrollment, usually with a generic message; each finding
 * says which rule and what the device would do. `warning`s do not stop a device but are worth knowing
 * (a placeholder push topic, plain http on a loopback address, no CheckOut on removal).
 * https://developer.apple.com/documentation/devicemanagement/mdm
 * https://developer.apple.com/documentation/devicemanagement/scep
 */
import { BYOD_VERSION } from './discovery.js'
import { isDict, type PlistDict, type PlistValue } from './plist.js'

export interface ProfileFinding {
  severity: 'error' | 'warning'
  /** One sentence: the rule, and what a device does about it. */
  rule: string
}

export interface ProfileRuleContext {
  /** Discovery's `Version` (`mdm-byod`, `mdm-adde`): EnrollmentMode must match it. Default mdm-byod. */
  version?: string
}

/** EnrollmentMode for each discovery Version. */
const ENROLLMENT_MODE: Record<string, string> = { [BYOD_VERSION]: 'BYOD', 'mdm-adde': 'ADDE' }

const IDENTITY_PAYLOADS = ['com.apple.security.scep', 'com.apple.security.acme']

/** A topic whose UUID is all zeros: a server's stand-in while no push certificate is configured. */
const PLACEHOLDER_TOPIC = /0{8}-0{4}-0{4}-0{4}-0{12}$/

/** Every rule the profile breaks, errors first; an empty list means a device would install it. */
export function checkEnrollmentProfile(profile: PlistDict, context: ProfileRuleContext = {}): ProfileFinding[] {
  const findings: ProfileFinding[] = []
  const error = (rule: string) => findings.push({ severity: 'error', rule })
  const warning = (rule: string) => findings.push({ severity: 'warning', rule })

  if (profile.PayloadType !== 'Configuration') error(`the profile's PayloadType is ${describe(profile.PayloadType)}, not Configuration: a device would not install it`)
  for (const key of ['PayloadUUID', 'PayloadIdentifier']) {
    if (!nonEmptyString(profile[key])) error(`the profile has no ${key}: a device would not install it`)
  }
  if (profile.PayloadRemovalDisallowed !== undefined) error('the profile has PayloadRemovalDisallowed, which user enrollment forbids: a device would cancel enrollment')
  const payloads = Array.isArray(profile.PayloadContent) ? profile.PayloadContent : undefined
  if (!payloads) {
    error('the profile has no PayloadContent array: a device would not install it')
    return sorted(findings)
  }
  const dicts = payloads.filter(isDict)
  if (dicts.length !== payloads.length) error('an item of PayloadContent is not a dictionary: a device would not install the profile')
  const uuids = new Set<string>()
  for (const p of dicts) {
    if (!nonEmptyString(p.PayloadType) || !nonEmptyString(p.PayloadUUID) || !nonEmptyString(p.PayloadIdentifier)) {
      error(`a payload (${describe(p.PayloadType)}) lacks PayloadType, PayloadUUID or PayloadIdentifier: a device would not install the profile`)
      continue
    }
    if (uuids.has(p.PayloadUUID as string) || p.PayloadUUID === profile.PayloadUUID) error(`the PayloadUUID ${p.PayloadUUID as string} is used twice: a device would not install the profile`)
    uuids.add(p.PayloadUUID as string)
  }

  const mdms = dicts.filter((p) => p.PayloadType === 'com.apple.mdm')
  if (mdms.length !== 1) {
    error(`the profile has ${mdms.length} com.apple.mdm payloads instead of one: a device would cancel enrollment`)
    return sorted(findings)
  }
  const mdm = mdms[0]!
  const version = context.version ?? BYOD_VERSION
  const mode = ENROLLMENT_MODE[version]
  if (mdm.EnrollmentMode !== mode) {
    error(`EnrollmentMode is ${describe(mdm.EnrollmentMode)} but discovery said ${version} (which needs ${mode ?? 'a known mode'}): a device would cancel enrollment`)
  }
  if (version === BYOD_VERSION && !nonEmptyString(mdm.AssignedManagedAppleID)) {
    error('the com.apple.mdm payload has no AssignedManagedAppleID, which user enrollment requires: a device would cancel enrollment')
  }
  if (mdm.AccessRights !== undefined && version === BYOD_VERSION) error('the profile has AccessRights: a device would cancel enrollment (user enrollment forbids them)')

  const identity = dicts.find((p) => p.PayloadUUID === mdm.IdentityCertificateUUID)
  if (!nonEmptyString(mdm.IdentityCertificateUUID)) {
    error('the com.apple.mdm payload has no IdentityCertificateUUID: a device would have no identity to check in with')
  } else if (!identity || !IDENTITY_PAYLOADS.includes(identity.PayloadType as string)) {
    error('IdentityCertificateUUID does not name a SCEP or ACME payload of the profile: a device would cancel enrollment')
  }

  if (!nonEmptyString(mdm.Topic)) error('the com.apple.mdm payload has no Topic: a device would cancel enrollment')
  else if (!(mdm.Topic as string).startsWith('com.apple.mgmt.')) error(`the Topic ${mdm.Topic as string} does not start with com.apple.mgmt.: it is not an MDM push certificate's topic, and a device would cancel enrollment`)
  else if (PLACEHOLDER_TOPIC.test(mdm.Topic as string)) warning(`the Topic ${mdm.Topic as string} is a placeholder (no push certificate configured): a real device would enroll but never receive a push, and must enroll again once the topic is set`)

  checkUrl('ServerURL', mdm.ServerURL, true, error, warning)
  if (mdm.CheckInURL !== undefined) checkUrl('CheckInURL', mdm.CheckInURL, false, error, warning)
  if (mdm.SignMessage !== true) warning('SignMessage is not true: the device will not sign its check-ins (Mdm-Signature), and a server that identifies devices by it refuses them')
  if (mdm.CheckOutWhenRemoved !== true) warning('CheckOutWhenRemoved is not true: the server will not hear when the user removes the enrollment')
  if (mdm.ServerCapabilities !== undefined && !(Array.isArray(mdm.ServerCapabilities) && mdm.ServerCapabilities.every((c) => typeof c === 'string'))) {
    error('ServerCapabilities is not an array of strings: a device would not install the profile')
  }

  if (identity?.PayloadType === 'com.apple.security.scep') checkScep(identity, error, warning)
  return sorted(findings)
}

function checkScep(payload: PlistDict, error: (r: string) => void, warning: (r: string) => void): void {
  const c = payload.PayloadContent
  if (!isDict(c)) {
    error('the SCEP payload has no PayloadContent dictionary: a device would cancel enrollment')
    return
  }
  if (!nonEmptyString(c.URL) || !isAbsoluteUrl(c.URL as string)) error('the SCEP payload has no absolute URL: a device could not get its identity')
  if (!nonEmptyString(c.Challenge)) warning('the SCEP payload has no Challenge: a CA that requires one refuses the device')
  if (c['Key Type'] !== undefined && c['Key Type'] !== 'RSA') error(`the SCEP Key Type is ${describe(c['Key Type'])}: devices generate RSA keys only (the key is "Key Type", with the space)`)
  if (c.Keysize !== undefined && !(Number.isInteger(c.Keysize) && (c.Keysize as number) >= 1024 && (c.Keysize as number) <= 4096)) error(`the SCEP Keysize ${describe(c.Keysize)} is not one a device generates (1024 to 4096; 2048 is usual)`)
  if (c['Key Usage'] !== undefined && ![1, 4, 5].includes(c['Key Usage'] as number)) warning(`the SCEP Key Usage ${describe(c['Key Usage'])} is not 1, 4 or 5: the identity must sign (Mdm-Signature)`)
  else if (c['Key Usage'] === 4) warning('the SCEP Key Usage is 4 (encryption only): the identity must sign check-ins')
  if (c.Subject !== undefined && !isSubject(c.Subject)) error('the SCEP Subject is not an array of RDNs, each an array of [oid, value] pairs: a device would cancel enrollment')
  if (c.CAFingerprint !== undefined && !(c.CAFingerprint instanceof Uint8Array)) error('the SCEP CAFingerprint is not data: a device would cancel enrollment')
}

function checkUrl(name: string, value: PlistValue | undefined, required: boolean, error: (r: string) => void, warning: (r: string) => void): void {
  if (value === undefined && !required) return
  if (!nonEmptyString(value) || !isAbsoluteUrl(value as string)) {
    error(`${name} is missing or not an absolute URL: a device would cancel enrollment`)
    return
  }
  const url = new URL(value as string)
  if (url.protocol === 'https:') return
  if (url.protocol === 'http:' && isLoopback(url.hostname)) {
    warning(`${name} is ${value as string}: plain http on a loopback address, fine for this machine, but an Apple device only enrolls over https`)
    return
  }
  error(`${name} is ${value as string}, not https: a device would cancel enrollment`)
}

export function isLoopback(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase()
  return h === 'localhost' || h.endsWith('.localhost') || /^127\.\d+\.\d+\.\d+$/.test(h) || h === '::1'
}

function isSubject(value: PlistValue): boolean {
  return Array.isArray(value) && value.every((rdn) => Array.isArray(rdn) && rdn.every((pair) => Array.isArray(pair) && pair.length === 2 && pair.every((s) => typeof s === 'string')))
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
