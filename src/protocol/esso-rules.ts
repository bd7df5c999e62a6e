/**
 * Enrollment SSO (ESSO) rules shared by the document builder (esso.ts), the document validator
 * (esso-validate.ts) and the configuration reader (config/esso.ts): what the settings may hold and what
 * the profile inside an ESSO document may contain (PROTOCOL.md section 5).
 *
 * Sources, cited where each rule is made:
 * - [article] Apple, "Implementing the Enrollment SSO flow"
 *   https://developer.apple.com/documentation/devicemanagement/implementing-the-enrollment-sso-flow
 * - [esso.yaml] apple/device-management other/esso.yaml (EnrollmentSSODocument)
 * - [extensiblesso.yaml] apple/device-management mdm/profiles/com.apple.extensiblesso.yaml
 * - [certificates] mdm/profiles/com.apple.security.{root,pkcs1,pem,pkcs12}.yaml
 */
import { isDict, type PlistDict, type PlistValue } from './plist.js'

export const EXTENSIBLE_SSO = 'com.apple.extensiblesso'
export const ACTIVATION_SIMPLE = 'com.apple.activation.simple'
export const APP_MANAGED = 'com.apple.configuration.app.managed'
export const LEGACY_PROFILE = 'com.apple.configuration.legacy'

/** `standard`: the `X-Apple-MDM-ESSO` document; `developer`: the `X-Apple-MDM-ESSO-Developer` (test mode) one. */
export type EssoMode = 'standard' | 'developer'

/**
 * [article]: the profile "may contain certificate payloads". Apple's schema has exactly four certificate
 * payload types ("Certificate (Root)", "(PKCS #1)", "(PEM)", "(PKCS #12)"); there is no
 * `com.apple.security.certificate`, and SCEP/ACME are identity-enrollment payloads, not certificates.
 */
export const CERTIFICATE_PAYLOAD_TYPES: readonly string[] = ['com.apple.security.root', 'com.apple.security.pkcs1', 'com.apple.security.pem', 'com.apple.security.pkcs12']

/**
 * `TEAMID.bundle.id` [article: "the concatenation of the app's Team ID and bundle ID"]. Apple Team IDs
 * are 10 upper-case letters and digits; the article's own placeholder `ABCD1234` is shorter, but no real
 * Team ID is, and a typo here only shows on a device as a silent failure.
 */
export const APP_ID = /^[A-Z0-9]{10}\.[A-Za-z0-9.-]+$/

/** The bundle identifier part of an App ID. */
export function bundleIdOf(appId: string): string {
  return appId.slice(appId.indexOf('.') + 1)
}

export const ESSO_DELIVERIES = ['profile', 'declarations', 'both'] as const
export type EssoDelivery = (typeof ESSO_DELIVERIES)[number]

export const LICENSE_ASSIGNMENTS = ['User', 'Device'] as const

/** What the administrator configures; config/esso.ts reads it from the environment. */
export interface EssoSettings {
  /** App Store id of the Enrollment SSO app: required for the standard document [article]. */
  itunesStoreId?: number
  /** Associated domains of the SSO app; with declarations they go in the app configuration's Attributes. */
  associatedDomains?: string[]
  /** `AssociatedDomainsEnableDirectDownloads`: only for domains not reachable from the internet [article]. */
  directDownloads?: boolean
  /**
   * Each the content of one `com.apple.extensiblesso` payload, PayloadType included. PayloadIdentifier,
   * PayloadUUID and PayloadVersion may be absent: the builder derives stable ones from the content.
   */
  ssoPayloads: PlistDict[]
  /** Certificate payloads (CERTIFICATE_PAYLOAD_TYPES) to install with the SSO payloads, e.g. the IdP's CA. */
  certificatePayloads: PlistDict[]
  /** Which of `ConfigurationProfile` / `Declarations` the document carries. */
  delivery: EssoDelivery
  /** App IDs for Enrollment SSO test mode (`X-Apple-MDM-ESSO-Developer`), `TEAMID.bundle.id`. */
  developerAppIds?: string[]
  /**
   * `InstallBehavior.License.Assignment` of the app configuration. Apple's app.managed schema says it
   * "needs to be present for App Store apps", but the ESSO article does not ask for it and the app is
   * installed before the device is enrolled (no license can be assigned to it yet): absent by default.
   */
  appLicenseAssignment?: (typeof LICENSE_ASSIGNMENTS)[number]
}

export type EssoSettingsField = keyof EssoSettings

export interface EssoSettingsProblem {
  field: EssoSettingsField
  message: string
}

const nonEmptyString = (v: unknown): v is string => typeof v === 'string' && v.trim().length > 0
const stringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string')
const nonEmptyStrings = (v: unknown): v is string[] => stringArray(v) && v.length > 0 && v.every(nonEmptyString)

/** [extensiblesso.yaml] URLs: "need to begin with 'http://' or 'https://'", no query parameters or fragments. */
function isUrlPrefix(value: string): boolean {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return false
  }
  return (url.protocol === 'https:' || url.protocol === 'http:') && !value.includes('?') && !value.includes('#')
}

/**
 * The keys every payload carries (TopLevel.yaml and each payload schema): in a profile they are all
 * required; in settings PayloadIdentifier/PayloadUUID/PayloadVersion may be left to the builder.
 */
function payloadKeyProblems(p: PlistDict, where: string, required: boolean): string[] {
  const out: string[] = []
  for (const key of ['PayloadIdentifier', 'PayloadUUID'] as const) {
    if (p[key] === undefined ? required : !nonEmptyString(p[key])) out.push(`${where}: ${key} must be a non-empty string`)
  }
  if (p.PayloadVersion === undefined ? required : !Number.isSafeInteger(p.PayloadVersion)) out.push(`${where}: PayloadVersion must be an integer`)
  return out
}

/** One `com.apple.extensiblesso` payload against [extensiblesso.yaml], as far as iOS and visionOS read it. */
export function ssoPayloadProblems(p: PlistDict, where: string, requirePayloadKeys: boolean): string[] {
  const out = payloadKeyProblems(p, where, requirePayloadKeys)
  if (!nonEmptyString(p.ExtensionIdentifier)) out.push(`${where} has no ExtensionIdentifier (the bundle identifier of the SSO app extension)`)
  // "required on macOS and ignored elsewhere"; ESSO exists on iOS and visionOS only: optional here.
  if (p.TeamIdentifier !== undefined && !nonEmptyString(p.TeamIdentifier)) out.push(`${where}: TeamIdentifier must be a non-empty string`)
  if (p.Type === 'Redirect') {
    if (!nonEmptyStrings(p.URLs)) out.push(`${where}: a Redirect payload needs URLs, a non-empty array of http(s) URL prefixes`)
    else for (const u of p.URLs) if (!isUrlPrefix(u)) out.push(`${where}: URL "${u}" must be an http:// or https:// prefix without query or fragment`)
  } else if (p.Type === 'Credential') {
    // The schema requires Hosts for Credential and keeps Realm optional ("Use proper capitalization").
    if (!nonEmptyStrings(p.Hosts)) out.push(`${where}: a Credential payload needs Hosts, a non-empty array of host or domain names`)
    if (p.Realm !== undefined && !nonEmptyString(p.Realm)) out.push(`${where}: Realm must be a non-empty string`)
  } else {
    out.push(`${where}: Type must be Redirect or Credential`)
  }
  if (p.ExtensionData !== undefined && !isDict(p.ExtensionData)) out.push(`${where}: ExtensionData must be a dictionary`)
  if (p.ScreenLockedBehavior !== undefined && p.ScreenLockedBehavior !== 'Cancel' && p.ScreenLockedBehavior !== 'DoNotHandle') {
    out.push(`${where}: ScreenLockedBehavior must be Cancel or DoNotHandle`)
  }
  if (p.DeniedBundleIdentifiers !== undefined && !stringArray(p.DeniedBundleIdentifiers)) out.push(`${where}: DeniedBundleIdentifiers must be an array of strings`)
  return out
}

/** [certificates]: PayloadContent (the certificate or PKCS #12 bytes) is required. */
export function certificatePayloadProblems(p: PlistDict, where: string, requirePayloadKeys: boolean): string[] {
  const out = payloadKeyProblems(p, where, requirePayloadKeys)
  if (!CERTIFICATE_PAYLOAD_TYPES.includes(p.PayloadType as string)) out.push(`${where}: PayloadType must be one of ${CERTIFICATE_PAYLOAD_TYPES.join(', ')}`)
  if (!(p.PayloadContent instanceof Uint8Array) || p.PayloadContent.length === 0) out.push(`${where}: PayloadContent must hold the certificate data`)
  return out
}

/**
 * Rules across payloads: unique PayloadUUIDs/PayloadIdentifiers, and [extensiblesso.yaml] "Requires
 * that the URLs [and host names] of all installed Extensible SSO payloads are unique".
 */
function crossPayloadProblems(payloads: PlistDict[], where: string): string[] {
  const out: string[] = []
  const seen = (values: string[], what: string) => {
    const dup = values.filter((v, i) => values.indexOf(v) !== i)
    for (const v of new Set(dup)) out.push(`${where}: ${what} "${v}" appears more than once`)
  }
  seen(payloads.map((p) => p.PayloadUUID).filter(nonEmptyString).map((u) => u.toUpperCase()), 'PayloadUUID')
  seen(payloads.map((p) => p.PayloadIdentifier).filter(nonEmptyString), 'PayloadIdentifier')
  const sso = payloads.filter((p) => p.PayloadType === EXTENSIBLE_SSO)
  seen(sso.flatMap((p) => (p.Type === 'Redirect' && stringArray(p.URLs) ? p.URLs.map((u) => u.toLowerCase()) : [])), 'extensible SSO URL')
  seen(sso.flatMap((p) => (p.Type === 'Credential' && stringArray(p.Hosts) ? p.Hosts.map((h) => h.toLowerCase()) : [])), 'extensible SSO host')
  return out
}

function describePayload(p: PlistValue, index: number): string {
  return isDict(p) && nonEmptyString(p.PayloadIdentifier) ? `payload ${p.PayloadIdentifier}` : `payload ${index + 1}`
}

/**
 * The profile rule [article]: "This profile needs to contain at least one `com.apple.extensiblesso`
 * payload, and may contain certificate payloads. Other payload types in the profile generate an error."
 * The same rule holds for the profiles that legacy configurations reference. `where` names the profile.
 */
export function profileProblems(profile: PlistDict, where: string): string[] {
  const out: string[] = []
  if (profile.PayloadType !== 'Configuration') out.push(`${where} is not a configuration profile (its PayloadType must be Configuration)`)
  if (profile.EncryptedPayloadContent !== undefined) out.push(`${where} is encrypted; the device cannot decrypt it before it is enrolled`)
  out.push(...payloadKeyProblems(profile, where, true))
  if (!Array.isArray(profile.PayloadContent)) {
    out.push(`${where} has no PayloadContent array`)
    return out
  }
  const payloads: PlistDict[] = []
  profile.PayloadContent.forEach((p, i) => {
    const name = `${where}, ${describePayload(p, i)}`
    if (!isDict(p)) return void out.push(`${name} is not a dictionary`)
    payloads.push(p)
    if (p.PayloadType === EXTENSIBLE_SSO) out.push(...ssoPayloadProblems(p, name, true))
    else if (CERTIFICATE_PAYLOAD_TYPES.includes(p.PayloadType as string)) out.push(...certificatePayloadProblems(p, name, true))
    else out.push(`${where} contains a ${typeof p.PayloadType === 'string' ? p.PayloadType : 'untyped'} payload; only ${EXTENSIBLE_SSO} and certificate payloads are allowed`)
  })
  if (!payloads.some((p) => p.PayloadType === EXTENSIBLE_SSO)) out.push(`${where} contains no ${EXTENSIBLE_SSO} payload; it needs at least one`)
  out.push(...crossPayloadProblems(payloads, where))
  return out
}

/** Every problem with the settings, each naming the field to fix (config/esso.ts maps it to a variable). */
export function essoSettingsProblems(s: EssoSettings): EssoSettingsProblem[] {
  const out: EssoSettingsProblem[] = []
  const add = (field: EssoSettingsField, message: string) => out.push({ field, message })
  if (!(ESSO_DELIVERIES as readonly string[]).includes(s.delivery)) add('delivery', `delivery must be one of ${ESSO_DELIVERIES.join(', ')}`)
  if (s.itunesStoreId !== undefined && !(Number.isSafeInteger(s.itunesStoreId) && s.itunesStoreId > 0)) {
    add('itunesStoreId', 'iTunesStoreID must be a positive integer (the App Store id of the SSO app)')
  }
  if (s.developerAppIds !== undefined) {
    if (!stringArray(s.developerAppIds) || s.developerAppIds.length === 0) add('developerAppIds', 'developer App IDs must be a non-empty list')
    else {
      for (const id of s.developerAppIds) if (!APP_ID.test(id)) add('developerAppIds', `"${id}" is not an App ID (TEAMID.bundle.id, the Team ID being 10 upper-case letters or digits)`)
      const bundles = s.developerAppIds.map(bundleIdOf)
      for (const b of new Set(bundles.filter((b, i) => bundles.indexOf(b) !== i))) add('developerAppIds', `bundle ID ${b} appears in more than one App ID`)
    }
  }
  // [article] the standard document requires iTunesStoreID, the test-mode document AppIDs instead.
  if (s.itunesStoreId === undefined && s.developerAppIds === undefined) add('itunesStoreId', 'set the iTunes Store ID of the SSO app (or developer App IDs for test mode only)')
  if (s.associatedDomains !== undefined) {
    if (!stringArray(s.associatedDomains) || s.associatedDomains.length === 0) add('associatedDomains', 'associated domains must be a non-empty list')
    else for (const d of s.associatedDomains) if (!/^[^\s,]+$/.test(d)) add('associatedDomains', `"${d}" is not a domain`)
  }
  if (s.directDownloads !== undefined && typeof s.directDownloads !== 'boolean') add('directDownloads', 'direct downloads must be true or false')
  if (s.directDownloads !== undefined && s.associatedDomains === undefined) add('directDownloads', 'direct downloads has no effect without associated domains')
  if (s.appLicenseAssignment !== undefined && !(LICENSE_ASSIGNMENTS as readonly string[]).includes(s.appLicenseAssignment)) {
    add('appLicenseAssignment', `license assignment must be one of ${LICENSE_ASSIGNMENTS.join(', ')}`)
  }
  if (!Array.isArray(s.ssoPayloads) || s.ssoPayloads.length === 0) add('ssoPayloads', `at least one ${EXTENSIBLE_SSO} payload is required`)
  else
    s.ssoPayloads.forEach((p, i) => {
      const where = `extensible SSO ${describePayload(p, i)}`
      if (p.PayloadType !== EXTENSIBLE_SSO) add('ssoPayloads', `${where}: PayloadType must be ${EXTENSIBLE_SSO}`)
      for (const m of ssoPayloadProblems(p, where, false)) add('ssoPayloads', m)
    })
  const certificates = Array.isArray(s.certificatePayloads) ? s.certificatePayloads : []
  if (!Array.isArray(s.certificatePayloads)) add('certificatePayloads', 'certificate payloads must be a list (possibly empty)')
  certificates.forEach((p, i) => {
    for (const m of certificatePayloadProblems(p, `certificate ${describePayload(p, i)}`, false)) add('certificatePayloads', m)
  })
  for (const m of crossPayloadProblems([...(Array.isArray(s.ssoPayloads) ? s.ssoPayloads : []), ...certificates], 'the ESSO payloads')) add('ssoPayloads', m)
  return out
}

/** The settings check for start-up and the admin API: one sentence per broken rule, empty when valid. */
export function checkEssoSettings(settings: EssoSettings): string[] {
  return essoSettingsProblems(settings).map((p) => p.message)
}
