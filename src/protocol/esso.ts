/**
 * Enrollment SSO (ESSO) documents (PROTOCOL.md section 5): the JSON a device GETs from the URL in the
 * enroll 401's `X-Apple-MDM-ESSO` (or `X-Apple-MDM-ESSO-Developer`) header, the declarations Base64'd
 * into it, and the signed profile that the document and the legacy configuration both carry.
 * Apple, "Implementing the Enrollment SSO flow":
 * https://developer.apple.com/documentation/devicemanagement/implementing-the-enrollment-sso-flow
 *
 * Everything is derived from the settings and the context, never random: with declarations the device
 * turns declarative management on right after enrollment and syncs at once, and the server must then
 * serve the same declarations (same Identifier and ServerToken) or the device removes them ([article]).
 * Rebuilding in any process gives the same identifiers, ServerTokens and profile plist; only the CMS
 * signature differs (its signingTime).
 */
import { canonicalJson, nameBasedUuid, sha256Hex, sortPlistKeys, type JsonObject } from './canonical.js'
import { makeDeclaration, type Declaration } from './declarations.js'
import {
  ACTIVATION_SIMPLE,
  APP_MANAGED,
  bundleIdOf,
  checkEssoSettings,
  LEGACY_PROFILE,
  type EssoMode,
  type EssoSettings,
} from './esso-rules.js'
import { buildPlist, type PlistDict } from './plist.js'

export {
  ACTIVATION_SIMPLE,
  APP_ID,
  APP_MANAGED,
  bundleIdOf,
  CERTIFICATE_PAYLOAD_TYPES,
  checkEssoSettings,
  ESSO_DELIVERIES,
  essoSettingsProblems,
  EXTENSIBLE_SSO,
  LEGACY_PROFILE,
  LICENSE_ASSIGNMENTS,
  profileProblems,
  type EssoDelivery,
  type EssoMode,
  type EssoSettings,
  type EssoSettingsField,
  type EssoSettingsProblem,
} from './esso-rules.js'
export { validateEssoDocument, type EssoValidateOptions } from './esso-validate.js'
export type { Declaration } from './declarations.js'

/** What the builder needs from the server around it. */
export interface EssoBuildContext {
  /** Reverse-DNS prefix of every identifier, e.g. `com.example.mdm`. */
  identifierPrefix: string
  /** PayloadOrganization of the profile. */
  orgName: string
  /** The absolute URL at which the server serves the legacy profile with this key (no authentication). */
  legacyProfileUrl: (profileKey: string) => string
  /** CMS-signs a profile plist (attached content), like the enrollment profile. */
  sign: (plistXml: Buffer) => Buffer
}

/** The JSON object the device GETs. Keys are Apple's [article, esso.yaml]. */
export interface EssoDocument {
  iTunesStoreID?: number
  AppIDs?: string[]
  AssociatedDomains?: string[]
  AssociatedDomainsEnableDirectDownloads?: boolean
  /** Base64 of the signed profile. */
  ConfigurationProfile?: string
  /** Each Base64 of one declaration's JSON. */
  Declarations?: string[]
}

export interface EssoLegacyProfile {
  /** sha256 (hex) of the profile plist: changes exactly when the profile's content does. */
  key: string
  /** The signed profile to serve at `legacyProfileUrl(key)`. */
  signed: Buffer
}

export interface EssoArtifacts {
  document: EssoDocument
  /** Decoded: exactly those Base64'd into `document.Declarations` (empty with delivery `profile`). */
  declarations: Declaration[]
  /** The profiles the legacy configurations reference (empty with delivery `profile`). */
  legacyProfiles: EssoLegacyProfile[]
}

export class EssoSettingsError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid Enrollment SSO settings: ${problems.join('; ')}`)
    this.name = 'EssoSettingsError'
  }
}

/** The documents these settings can produce: standard needs iTunesStoreID, developer needs App IDs. */
export function essoModes(settings: EssoSettings): EssoMode[] {
  const modes: EssoMode[] = []
  if (settings.itunesStoreId !== undefined) modes.push('standard')
  if (settings.developerAppIds?.length) modes.push('developer')
  return modes
}

/** Identifiers travel in DDM paths (`declaration/configuration/<Identifier>`): no slash, no space. */
const IDENTIFIER_PREFIX = /^[A-Za-z0-9][A-Za-z0-9.-]*$/

/**
 * `<prefix>.<esso|esso-dev>.<role>`; DeclarationBase says an Identifier "should not exceed 64 octets",
 * so a prefix too long for the longest role (a test-mode app, `app.` and 12 hex digits) is replaced by a
 * digest of it, for the whole set alike. Standard and test-mode sets get distinct identifiers: the
 * server serves a device the set it fetched, and the two must never be mistaken for each other.
 */
function identifierFor(prefix: string, mode: EssoMode, role: string): string {
  const base = mode === 'standard' ? 'esso' : 'esso-dev'
  const fits = Buffer.byteLength(`${prefix}.esso-dev.app.${'0'.repeat(12)}`) <= 64
  return fits ? `${prefix}.${base}.${role}` : `${base}.${sha256Hex(prefix).slice(0, 16)}.${role}`
}

const PAYLOAD_IDENTITY_KEYS = new Set(['PayloadIdentifier', 'PayloadUUID', 'PayloadVersion'])

/**
 * A payload with PayloadVersion, PayloadIdentifier and PayloadUUID filled in where the settings left
 * them out, all derived from the prefix and the payload's content so a rebuild gives the same ones.
 */
function withPayloadKeys(payload: PlistDict, prefix: string, kind: 'sso' | 'certificate'): PlistDict {
  const content: PlistDict = {}
  for (const [k, v] of Object.entries(payload)) if (!PAYLOAD_IDENTITY_KEYS.has(k)) content[k] = v
  const digest = sha256Hex(buildPlist(sortPlistKeys(content)))
  return sortPlistKeys({
    PayloadVersion: 1,
    PayloadIdentifier: `${prefix}.esso.${kind}.${digest.slice(0, 16)}`,
    PayloadUUID: nameBasedUuid(`${prefix}\npayload\n${digest}`),
    ...payload,
  })
}

/**
 * The profile of the `ConfigurationProfile` key and of the legacy configuration: the SSO payloads and
 * certificate payloads, nothing else [article]. No PayloadRemovalDisallowed: user enrollment forbids it.
 */
export function buildEssoProfile(settings: EssoSettings, ctx: Pick<EssoBuildContext, 'identifierPrefix' | 'orgName'>): PlistDict {
  const prefix = ctx.identifierPrefix
  const payloads = [
    ...settings.ssoPayloads.map((p) => withPayloadKeys(p, prefix, 'sso')),
    ...settings.certificatePayloads.map((p) => withPayloadKeys(p, prefix, 'certificate')),
  ]
  const digest = sha256Hex(buildPlist(payloads))
  return sortPlistKeys({
    PayloadType: 'Configuration',
    PayloadVersion: 1,
    // Stable: a changed profile replaces the installed one (the device matches PayloadIdentifier).
    PayloadIdentifier: `${prefix}.esso.profile`,
    PayloadUUID: nameBasedUuid(`${prefix}\nprofile\n${ctx.orgName}\n${digest}`),
    PayloadDisplayName: 'Enrollment single sign-on',
    PayloadOrganization: ctx.orgName,
    PayloadContent: payloads,
  })
}

/**
 * The `com.apple.configuration.app.managed` payload (app.managed.yaml). Standard: `AppStoreID`, a
 * string equal to iTunesStoreID [article]; test mode: `BundleID`, one configuration per App ID.
 * `InstallBehavior.Install` `Required` in standard mode: SSO, and with it the enrollment's sign-in,
 * depends on the app, so the user must not remove it ("Required: ... The user can't remove the app").
 * Test mode leaves it out: the developer installs the app by hand and it is not in the App Store.
 * With declarations the document's AssociatedDomains* are ignored: they go in `Attributes` [article].
 */
function appPayload(settings: EssoSettings, app: { AppStoreID: string } | { BundleID: string }): JsonObject {
  const payload: JsonObject = { ...app }
  const attributes: JsonObject = {}
  if (settings.associatedDomains) attributes.AssociatedDomains = [...settings.associatedDomains]
  if (settings.directDownloads !== undefined) attributes.AssociatedDomainsEnableDirectDownloads = settings.directDownloads
  if (Object.keys(attributes).length) payload.Attributes = attributes
  if ('AppStoreID' in app) {
    payload.InstallBehavior = {
      Install: 'Required',
      ...(settings.appLicenseAssignment ? { License: { Assignment: settings.appLicenseAssignment } } : {}),
    }
  }
  return payload
}

function buildDeclarations(settings: EssoSettings, prefix: string, mode: EssoMode, profileUrl: string): Declaration[] {
  const apps =
    mode === 'standard'
      ? [makeDeclaration(APP_MANAGED, identifierFor(prefix, mode, 'app'), appPayload(settings, { AppStoreID: String(settings.itunesStoreId) }))]
      : settings.developerAppIds!.map((appId) => {
          const bundleId = bundleIdOf(appId)
          return makeDeclaration(APP_MANAGED, identifierFor(prefix, mode, `app.${sha256Hex(bundleId).slice(0, 12)}`), appPayload(settings, { BundleID: bundleId }))
        })
  const legacy = makeDeclaration(LEGACY_PROFILE, identifierFor(prefix, mode, 'legacy'), { ProfileURL: profileUrl })
  const configurations = [...apps, legacy]
  // [article] "a single com.apple.activation.simple activation declaration that references all the
  // configuration declarations". No assets: this app configuration references none.
  const activation = makeDeclaration(ACTIVATION_SIMPLE, identifierFor(prefix, mode, 'activation'), {
    StandardConfigurations: configurations.map((c) => c.Identifier),
  })
  return [activation, ...configurations]
}

/** Base64 of a declaration's JSON, as the document's `Declarations` carries it. */
export function encodeDeclaration(declaration: Declaration): string {
  return Buffer.from(canonicalJson({ ...declaration }), 'utf8').toString('base64')
}

/** Builds the document for `mode`, its declarations and the legacy profile. Throws EssoSettingsError. */
export function buildEssoArtifacts(settings: EssoSettings, ctx: EssoBuildContext, mode: EssoMode): EssoArtifacts {
  const problems = checkEssoSettings(settings)
  if (mode === 'standard' && settings.itunesStoreId === undefined) problems.push('the standard document needs the iTunes Store ID of the SSO app')
  if (mode === 'developer' && !settings.developerAppIds?.length) problems.push('the developer document needs developer App IDs')
  if (!IDENTIFIER_PREFIX.test(ctx.identifierPrefix)) problems.push(`identifier prefix "${ctx.identifierPrefix}" must be reverse-DNS letters, digits, dots and hyphens`)
  if (problems.length) throw new EssoSettingsError(problems)

  const plistXml = Buffer.from(buildPlist(buildEssoProfile(settings, ctx)), 'utf8')
  const signed = ctx.sign(plistXml)
  const key = sha256Hex(plistXml)
  const withProfile = settings.delivery !== 'declarations'
  const withDeclarations = settings.delivery !== 'profile'
  const declarations = withDeclarations ? buildDeclarations(settings, ctx.identifierPrefix, mode, ctx.legacyProfileUrl(key)) : []

  const document: EssoDocument = {}
  // [esso.yaml] iTunesStoreID: "Using developer mode ignores this key"; AppIDs: "In Enrollment SSO
  // documents delivered by the standard Enrollment SSO endpoint, this key must not be present."
  if (mode === 'standard') document.iTunesStoreID = settings.itunesStoreId!
  else document.AppIDs = [...settings.developerAppIds!]
  // Only devices that take the profile read these; the declarations carry them in Attributes.
  if (withProfile && settings.associatedDomains) document.AssociatedDomains = [...settings.associatedDomains]
  if (withProfile && settings.associatedDomains && settings.directDownloads !== undefined) {
    document.AssociatedDomainsEnableDirectDownloads = settings.directDownloads
  }
  if (withProfile) document.ConfigurationProfile = signed.toString('base64')
  if (withDeclarations) document.Declarations = declarations.map(encodeDeclaration)
  return { document, declarations, legacyProfiles: withDeclarations ? [{ key, signed }] : [] }
}
