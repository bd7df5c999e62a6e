/**
 * Checks an Enrollment SSO document against Apple's rules before a device sees it: a device that
 * dislikes the document only shows a failed enrollment, so each broken rule is reported here as one
 * sentence naming it. Sources (see esso-rules.ts): [article] "Implementing the Enrollment SSO flow",
 * [esso.yaml], [app.managed.yaml] (iOS 18.4 keys), [legacy.yaml], [declarationbase.yaml].
 */
import { APP_ID, APP_MANAGED, ACTIVATION_SIMPLE, bundleIdOf, LEGACY_PROFILE, profileProblems, type EssoMode } from './esso-rules.js'
import { parsePlistDict } from './plist.js'
import { isLoopbackHost } from './urls.js'

export interface EssoValidateOptions {
  /** Returns the plist bytes inside a CMS SignedData; throws when the input is not one (or is unsigned). */
  unwrapProfile: (signed: Buffer) => Buffer
  /**
   * The signed profile this server serves at a legacy configuration's ProfileURL, or undefined when it
   * serves none there. With it the profile rule is checked on legacy profiles too; without it only
   * their URLs are.
   */
  legacyProfile?: (profileUrl: string) => Buffer | undefined
}

type Json = { [key: string]: unknown }
interface ParsedDeclaration {
  Type: string
  Identifier: string
  ServerToken: string
  Payload: Json
}

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v)
const isString = (v: unknown): v is string => typeof v === 'string' && v.length > 0
const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string')
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/

function decodeBase64(value: string): Buffer | undefined {
  return value.length > 0 && BASE64.test(value) ? Buffer.from(value, 'base64') : undefined
}

/** [legacy.yaml] ProfileURL "needs to start with 'https://'"; plain http only where nothing else can listen. */
function isAllowedProfileUrl(value: string): boolean {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return false
  }
  if (url.protocol === 'https:') return true
  return url.protocol === 'http:' && isLoopbackHost(url.hostname)
}

/** The profile rule on a signed profile: signed, an XML plist, only SSO and certificate payloads. */
function signedProfileProblems(signed: Buffer, where: string, unwrap: (signed: Buffer) => Buffer): string[] {
  let content: Buffer
  try {
    content = unwrap(signed)
  } catch (err) {
    return [`${where} is not a signed profile (CMS SignedData): ${(err as Error).message}`]
  }
  try {
    return profileProblems(parsePlistDict(content), where)
  } catch (err) {
    return [`${where} does not hold an XML property list: ${(err as Error).message}`]
  }
}

/** [declarationbase.yaml] Type, Identifier, ServerToken strings, Payload a dictionary. */
function parseDeclaration(item: unknown, where: string, out: string[]): ParsedDeclaration | undefined {
  if (typeof item !== 'string') return void out.push(`${where} must be a Base64 string`)
  const bytes = decodeBase64(item)
  if (!bytes) return void out.push(`${where} is not valid Base64`)
  let json: unknown
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch {
    return void out.push(`${where} does not decode to JSON`)
  }
  if (!isObject(json)) return void out.push(`${where} is not a JSON object`)
  let ok = true
  for (const key of ['Type', 'Identifier', 'ServerToken'] as const) {
    if (!isString(json[key])) {
      out.push(`${where} has no ${key} string`)
      ok = false
    } else if (key !== 'Type' && Buffer.byteLength(json[key]) > 64) {
      out.push(`${where}: ${key} is longer than 64 octets, Apple's limit`)
    }
  }
  if (!isObject(json.Payload)) {
    out.push(`${where} has no Payload dictionary`)
    ok = false
  }
  return ok ? (json as unknown as ParsedDeclaration) : undefined
}

/**
 * Asset references an app configuration can hold [app.managed.yaml, iOS 18.4]: each key path with the
 * asset types it accepts. `AppConfig` and every value of `ExtensionConfigs` are AppConfigDictionaries.
 */
function assetReferences(payload: Json): { path: string; identifier: unknown; types: string[] }[] {
  const refs: { path: string; identifier: unknown; types: string[] }[] = []
  const data = ['com.apple.asset.data']
  if (payload.LegacyAppConfigAssetReference !== undefined) refs.push({ path: 'LegacyAppConfigAssetReference', identifier: payload.LegacyAppConfigAssetReference, types: data })
  const fromDictionary = (dict: unknown, path: string) => {
    if (!isObject(dict)) return
    if (dict.DataAssetReference !== undefined) refs.push({ path: `${path}.DataAssetReference`, identifier: dict.DataAssetReference, types: data })
    const lists: [string, string[]][] = [
      ['Passwords', ['com.apple.asset.credential.userpassword']],
      ['Identities', ['com.apple.asset.credential.identity', 'com.apple.asset.credential.scep', 'com.apple.asset.credential.acme']],
      ['Certificates', ['com.apple.asset.credential.certificate']],
    ]
    for (const [key, types] of lists) {
      const items = dict[key]
      if (!Array.isArray(items)) continue
      items.forEach((item, i) => refs.push({ path: `${path}.${key}[${i}].AssetReference`, identifier: isObject(item) ? item.AssetReference : undefined, types }))
    }
  }
  fromDictionary(payload.AppConfig, 'AppConfig')
  if (isObject(payload.ExtensionConfigs)) for (const [id, dict] of Object.entries(payload.ExtensionConfigs)) fromDictionary(dict, `ExtensionConfigs["${id}"]`)
  return refs
}

const validStoreId = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v > 0

function documentKeyProblems(doc: Json, mode: EssoMode, out: string[]): void {
  if (mode === 'standard') {
    // [article] iTunesStoreID "(Required)" in the standard document (the 18.1 schema still said optional).
    if (doc.iTunesStoreID === undefined) out.push('iTunesStoreID is required in the standard document (the App Store id of the SSO app)')
    else if (!validStoreId(doc.iTunesStoreID)) out.push('iTunesStoreID must be a positive integer')
    // [esso.yaml] AppIDs: "In Enrollment SSO documents delivered by the standard Enrollment SSO endpoint, this key must not be present."
    if (doc.AppIDs !== undefined) out.push('AppIDs must not be present in the standard document; it belongs to the developer (test mode) document only')
  } else {
    // [esso.yaml] iTunesStoreID: "Using developer mode ignores this key": present or not, no rule.
    if (!isStringArray(doc.AppIDs) || doc.AppIDs.length === 0) out.push('AppIDs is required in the developer document: an array of at least one App ID')
    else {
      for (const id of doc.AppIDs) if (!APP_ID.test(id)) out.push(`AppIDs: "${id}" is not an App ID (TEAMID.bundle.id, the Team ID being 10 upper-case letters or digits)`)
      const dup = doc.AppIDs.filter((id, i) => doc.AppIDs && (doc.AppIDs as string[]).indexOf(id) !== i)
      for (const id of new Set(dup)) out.push(`AppIDs: "${id}" appears more than once`)
    }
  }
  if (doc.AssociatedDomains !== undefined && !isStringArray(doc.AssociatedDomains)) out.push('AssociatedDomains must be an array of strings')
  if (doc.AssociatedDomainsEnableDirectDownloads !== undefined && typeof doc.AssociatedDomainsEnableDirectDownloads !== 'boolean') {
    out.push('AssociatedDomainsEnableDirectDownloads must be a boolean')
  }
  // [article] "At least one of these keys needs to be present in the Enrollment SSO document."
  if (doc.ConfigurationProfile === undefined && doc.Declarations === undefined) out.push('the document needs ConfigurationProfile or Declarations (at least one of them)')
}

function appConfigurationProblems(app: ParsedDeclaration, doc: Json, mode: EssoMode, out: string[]): void {
  const name = `app configuration ${app.Identifier}`
  const p = app.Payload
  // [app.managed.yaml] "Only one of AppStoreID, BundleID, ManifestURL, or AppComposedIdentifier needs to be present."
  const keys = ['AppStoreID', 'BundleID', 'ManifestURL', 'AppComposedIdentifier'].filter((k) => p[k] !== undefined)
  if (keys.length > 1) out.push(`${name} has ${keys.join(' and ')}; only one of them may be present`)
  if (mode === 'standard') {
    // [article] "an AppStoreID key with a value that's the same as the iTunesStoreID key"; its type is string.
    if (p.AppStoreID === undefined) out.push(`${name} has no AppStoreID; the standard document's app configuration names the app by AppStoreID`)
    else if (typeof p.AppStoreID !== 'string') out.push(`${name}: AppStoreID must be a string (the iTunesStoreID written as a string)`)
    else if (validStoreId(doc.iTunesStoreID) && p.AppStoreID !== String(doc.iTunesStoreID)) out.push(`${name}: AppStoreID "${p.AppStoreID}" does not equal iTunesStoreID ${String(doc.iTunesStoreID)}`)
  } else if (!isString(p.BundleID)) {
    // [article] test mode: "These app configurations need to have a BundleID key".
    out.push(`${name} has no BundleID; in the developer document each app configuration names its app by BundleID`)
  }
  if (p.Attributes !== undefined) {
    if (!isObject(p.Attributes)) out.push(`${name}: Attributes must be a dictionary`)
    else {
      if (p.Attributes.AssociatedDomains !== undefined && !isStringArray(p.Attributes.AssociatedDomains)) out.push(`${name}: Attributes.AssociatedDomains must be an array of strings`)
      const direct = p.Attributes.AssociatedDomainsEnableDirectDownloads
      if (direct !== undefined && typeof direct !== 'boolean') out.push(`${name}: Attributes.AssociatedDomainsEnableDirectDownloads must be a boolean`)
    }
  }
}

function declarationsProblems(items: unknown, doc: Json, mode: EssoMode, opts: EssoValidateOptions, out: string[]): void {
  if (!Array.isArray(items)) return void out.push('Declarations must be an array of Base64 strings')
  const declarations = items.map((item, i) => parseDeclaration(item, `Declarations[${i}]`, out)).filter((d): d is ParsedDeclaration => d !== undefined)
  const ids = declarations.map((d) => d.Identifier)
  for (const id of new Set(ids.filter((id, i) => ids.indexOf(id) !== i))) out.push(`Declarations: Identifier ${id} is used by more than one declaration`)
  // The first of duplicates stands for its Identifier: one duplicate is one problem, not a cascade.
  const byId = new Map<string, ParsedDeclaration>()
  for (const d of declarations) if (!byId.has(d.Identifier)) byId.set(d.Identifier, d)
  const configurations = declarations.filter((d) => d.Type.startsWith('com.apple.configuration.'))

  // [article] "a single com.apple.activation.simple activation declaration that references all the configuration declarations".
  const activations = declarations.filter((d) => d.Type.startsWith('com.apple.activation.'))
  for (const a of activations) if (a.Type !== ACTIVATION_SIMPLE) out.push(`Declarations contain a ${a.Type} activation; only one ${ACTIVATION_SIMPLE} is allowed`)
  const simple = activations.filter((a) => a.Type === ACTIVATION_SIMPLE)
  if (simple.length !== 1) out.push(`Declarations contain ${simple.length} ${ACTIVATION_SIMPLE} activations; exactly one is required`)
  for (const activation of simple) {
    const listed = activation.Payload.StandardConfigurations
    if (!isStringArray(listed)) {
      out.push(`activation ${activation.Identifier}: StandardConfigurations must be an array of configuration identifiers`)
      continue
    }
    for (const id of listed) {
      if (!byId.get(id)?.Type.startsWith('com.apple.configuration.')) out.push(`activation ${activation.Identifier} lists ${id} in StandardConfigurations, but Declarations hold no configuration with that Identifier`)
    }
    for (const c of configurations) {
      if (!listed.includes(c.Identifier)) out.push(`activation ${activation.Identifier} does not list configuration ${c.Identifier} (${c.Type}); StandardConfigurations must list every configuration`)
    }
  }

  const apps = configurations.filter((d) => d.Type === APP_MANAGED)
  if (mode === 'standard' && apps.length !== 1) out.push(`Declarations contain ${apps.length} ${APP_MANAGED} configurations; exactly one is required`)
  if (mode === 'developer') {
    // [article] test mode: one app configuration per App ID, its BundleID the App ID's bundle part.
    if (apps.length === 0) out.push(`Declarations contain no ${APP_MANAGED} configuration; the developer document needs one per App ID`)
    const bundles = isStringArray(doc.AppIDs) ? doc.AppIDs.filter((id) => APP_ID.test(id)).map(bundleIdOf) : []
    for (const app of apps) {
      const b = app.Payload.BundleID
      if (isString(b) && bundles.length && !bundles.includes(b)) out.push(`app configuration ${app.Identifier} has BundleID ${b}, which matches none of the AppIDs`)
    }
    for (const b of new Set(bundles)) {
      const n = apps.filter((a) => a.Payload.BundleID === b).length
      if (n === 0) out.push(`no ${APP_MANAGED} configuration has BundleID ${b}; every App ID needs one`)
      if (n > 1) out.push(`${n} ${APP_MANAGED} configurations have BundleID ${b}; each App ID needs exactly one`)
    }
  }
  for (const app of apps) {
    appConfigurationProblems(app, doc, mode, out)
    // [article] "The declarations need to contain any asset declarations that the app configuration references."
    for (const ref of assetReferences(app.Payload)) {
      if (!isString(ref.identifier)) {
        out.push(`app configuration ${app.Identifier}: ${ref.path} must be an asset Identifier`)
        continue
      }
      const asset = byId.get(ref.identifier)
      if (!asset || !asset.Type.startsWith('com.apple.asset.')) out.push(`app configuration ${app.Identifier} references asset ${ref.identifier} (${ref.path}), which is not in Declarations`)
      else if (!ref.types.includes(asset.Type)) out.push(`app configuration ${app.Identifier}: ${ref.path} references ${asset.Type} asset ${ref.identifier}; it needs ${ref.types.join(' or ')}`)
    }
  }

  // [article] "one or more com.apple.configuration.legacy configuration declarations. The profile that
  // these configurations reference needs to conform to the same rules as the profile for the ConfigurationProfile key".
  const legacies = configurations.filter((d) => d.Type === LEGACY_PROFILE)
  if (legacies.length === 0) out.push(`Declarations contain no ${LEGACY_PROFILE} configuration; at least one is required`)
  for (const legacy of legacies) {
    const url = legacy.Payload.ProfileURL
    const name = `legacy configuration ${legacy.Identifier}`
    if (!isString(url) || !isAllowedProfileUrl(url)) {
      out.push(`${name}: ProfileURL must be an https:// URL (http:// only on a loopback host)`)
      continue
    }
    if (!opts.legacyProfile) continue
    const signed = opts.legacyProfile(url)
    if (!signed) out.push(`${name}: this server serves no profile at ${url}`)
    else out.push(...signedProfileProblems(signed, `the profile of ${name}`, opts.unwrapProfile))
  }
}

/** Every broken rule of an ESSO document, one sentence each; empty when the document is valid. */
export function validateEssoDocument(doc: unknown, mode: EssoMode, opts: EssoValidateOptions): string[] {
  if (!isObject(doc)) return ['the Enrollment SSO document must be a JSON object']
  const out: string[] = []
  documentKeyProblems(doc, mode, out)
  if (doc.ConfigurationProfile !== undefined) {
    const bytes = typeof doc.ConfigurationProfile === 'string' ? decodeBase64(doc.ConfigurationProfile) : undefined
    if (!bytes) out.push('ConfigurationProfile must be a Base64 string')
    else out.push(...signedProfileProblems(bytes, 'ConfigurationProfile', opts.unwrapProfile))
  }
  if (doc.Declarations !== undefined) declarationsProblems(doc.Declarations, doc, mode, opts, out)
  return out
}
