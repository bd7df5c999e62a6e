/**
 * Enrollment SSO (PROTOCOL.md section 5) from the environment. Pure over the environment and a file
 * reader so it is tested without touching process.env; src/config.ts calls it once at start-up.
 *
 * | variable | value |
 * |---|---|
 * | `ESSO_EXTENSIBLE_SSO` | path to a `.mobileconfig` (XML plist `Configuration`, plain or CMS-signed) holding one or more `com.apple.extensiblesso` payloads and optional certificate payloads, or to a `.json` file with the content of one `com.apple.extensiblesso` payload. Setting it turns ESSO on. |
 * | `ESSO_ITUNES_STORE_ID` | App Store id of the SSO app (digits); required unless only test mode is wanted |
 * | `ESSO_ASSOCIATED_DOMAINS` | comma-separated associated domains of the SSO app |
 * | `ESSO_ASSOCIATED_DOMAINS_DIRECT_DOWNLOADS` | true/false: verify the domains at the domain itself, not at Apple (only for domains not on the internet) |
 * | `ESSO_DELIVERY` | `profile`, `declarations` or `both` (default): which of `ConfigurationProfile`/`Declarations` the document carries |
 * | `ESSO_DEVELOPER_APP_IDS` | comma-separated App IDs (`TEAMID.bundle.id`) for test mode (`X-Apple-MDM-ESSO-Developer`) |
 * | `ESSO_APP_LICENSE_ASSIGNMENT` | `User` or `Device`: `InstallBehavior.License.Assignment` of the app configuration; unset by default |
 *
 * Why iTunes Store ID may be left out: Apple's article requires `iTunesStoreID` in the standard document
 * and `AppIDs` "instead" in the test-mode one, whose schema says developer mode ignores iTunesStoreID.
 * A developer testing an app not yet in the App Store has no store id: with ESSO_DEVELOPER_APP_IDS set
 * and no store id, only the developer document exists (see `essoModes`).
 * https://developer.apple.com/documentation/devicemanagement/implementing-the-enrollment-sso-flow
 */
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { parseSignedData, verifySingleSigner } from '../pki/cms.js'
import {
  CERTIFICATE_PAYLOAD_TYPES,
  ESSO_DELIVERIES,
  essoSettingsProblems,
  EXTENSIBLE_SSO,
  LICENSE_ASSIGNMENTS,
  type EssoDelivery,
  type EssoSettings,
  type EssoSettingsField,
} from '../protocol/esso.js'
import { isDict, parsePlistDict, PlistError, type PlistDict, type PlistValue } from '../protocol/plist.js'
import { bool, ConfigError, type Environment } from './values.js'

export const ESSO_VARIABLES = [
  'ESSO_EXTENSIBLE_SSO',
  'ESSO_ITUNES_STORE_ID',
  'ESSO_ASSOCIATED_DOMAINS',
  'ESSO_ASSOCIATED_DOMAINS_DIRECT_DOWNLOADS',
  'ESSO_DELIVERY',
  'ESSO_DEVELOPER_APP_IDS',
  'ESSO_APP_LICENSE_ASSIGNMENT',
] as const

/** Where a settings problem is fixed. */
const VARIABLE_OF: Record<EssoSettingsField, (typeof ESSO_VARIABLES)[number]> = {
  itunesStoreId: 'ESSO_ITUNES_STORE_ID',
  associatedDomains: 'ESSO_ASSOCIATED_DOMAINS',
  directDownloads: 'ESSO_ASSOCIATED_DOMAINS_DIRECT_DOWNLOADS',
  ssoPayloads: 'ESSO_EXTENSIBLE_SSO',
  certificatePayloads: 'ESSO_EXTENSIBLE_SSO',
  delivery: 'ESSO_DELIVERY',
  developerAppIds: 'ESSO_DEVELOPER_APP_IDS',
  appLicenseAssignment: 'ESSO_APP_LICENSE_ASSIGNMENT',
}

export type FileReader = (file: string) => Buffer

const FILE_VARIABLE = 'ESSO_EXTENSIBLE_SSO'
const MAX_FILE_BYTES = 1024 * 1024

/** The payloads of the `ESSO_EXTENSIBLE_SSO` file. */
interface FilePayloads {
  ssoPayloads: PlistDict[]
  certificatePayloads: PlistDict[]
}

/** Reads and checks the ESSO settings; null when ESSO is off. Throws ConfigError naming the variable. */
export function readEssoSettings(env: Environment, readFile: FileReader = (file) => readFileSync(file)): EssoSettings | null {
  const value = (name: (typeof ESSO_VARIABLES)[number]) => env[name]?.trim() || undefined
  const file = value('ESSO_EXTENSIBLE_SSO')
  if (!file) {
    const other = ESSO_VARIABLES.find((v) => value(v) !== undefined)
    if (other) throw new ConfigError(FILE_VARIABLE, `required when ${other} is set (the Enrollment SSO payload file, .mobileconfig or .json)`)
    return null
  }
  const payloads = readPayloadFile(file, readFile)

  const storeId = value('ESSO_ITUNES_STORE_ID')
  const developerAppIds = list(value('ESSO_DEVELOPER_APP_IDS'), 'ESSO_DEVELOPER_APP_IDS')
  if (storeId === undefined && developerAppIds === undefined) {
    throw new ConfigError('ESSO_ITUNES_STORE_ID', 'required when ESSO_EXTENSIBLE_SSO is set: the App Store id of the SSO app (set only ESSO_DEVELOPER_APP_IDS for test mode alone)')
  }
  let itunesStoreId: number | undefined
  if (storeId !== undefined) {
    itunesStoreId = Number(storeId)
    if (!/^\d+$/.test(storeId) || !Number.isSafeInteger(itunesStoreId) || itunesStoreId <= 0) {
      throw new ConfigError('ESSO_ITUNES_STORE_ID', 'expected the App Store id of the SSO app, a positive whole number (the digits after "id" in its App Store link)')
    }
  }

  let directDownloads: boolean | undefined
  const direct = value('ESSO_ASSOCIATED_DOMAINS_DIRECT_DOWNLOADS')
  if (direct !== undefined) {
    const parsed = bool.safeParse(direct.toLowerCase())
    if (!parsed.success) throw new ConfigError('ESSO_ASSOCIATED_DOMAINS_DIRECT_DOWNLOADS', 'expected true or false')
    directDownloads = parsed.data
  }

  const delivery = value('ESSO_DELIVERY') ?? 'both'
  if (!(ESSO_DELIVERIES as readonly string[]).includes(delivery)) throw new ConfigError('ESSO_DELIVERY', `expected one of ${ESSO_DELIVERIES.join(', ')}`)
  const license = value('ESSO_APP_LICENSE_ASSIGNMENT')
  if (license !== undefined && !(LICENSE_ASSIGNMENTS as readonly string[]).includes(license)) {
    throw new ConfigError('ESSO_APP_LICENSE_ASSIGNMENT', `expected one of ${LICENSE_ASSIGNMENTS.join(', ')}`)
  }

  const settings: EssoSettings = {
    ...(itunesStoreId !== undefined ? { itunesStoreId } : {}),
    ...optional('associatedDomains', list(value('ESSO_ASSOCIATED_DOMAINS'), 'ESSO_ASSOCIATED_DOMAINS')),
    ...optional('directDownloads', directDownloads),
    ...payloads,
    delivery: delivery as EssoDelivery,
    ...optional('developerAppIds', developerAppIds),
    ...optional('appLicenseAssignment', license as EssoSettings['appLicenseAssignment']),
  }
  const problems = essoSettingsProblems(settings)
  if (problems.length) {
    const field = problems[0]!.field
    throw new ConfigError(VARIABLE_OF[field], problems.filter((p) => p.field === field).map((p) => p.message).join('; '))
  }
  return settings
}

function optional<K extends keyof EssoSettings>(key: K, value: EssoSettings[K] | undefined): Partial<EssoSettings> {
  return value === undefined ? {} : { [key]: value }
}

function list(value: string | undefined, variable: string): string[] | undefined {
  if (value === undefined) return undefined
  const items = value.split(',').map((s) => s.trim())
  if (items.some((s) => s === '')) throw new ConfigError(variable, 'expected a comma-separated list without empty items')
  return items
}

function readPayloadFile(file: string, readFile: FileReader): FilePayloads {
  let bytes: Buffer
  try {
    bytes = readFile(file)
  } catch (err) {
    throw new ConfigError(FILE_VARIABLE, `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  if (bytes.length > MAX_FILE_BYTES) throw new ConfigError(FILE_VARIABLE, `${file} is larger than ${MAX_FILE_BYTES} bytes`)
  const extension = path.extname(file).toLowerCase()
  if (extension === '.json') return { ssoPayloads: [ssoPayloadFromJson(bytes, file)], certificatePayloads: [] }
  if (extension === '.mobileconfig' || extension === '.plist' || extension === '.xml') return payloadsFromProfile(bytes, file)
  throw new ConfigError(FILE_VARIABLE, `expected a .mobileconfig profile or a .json file with the content of one ${EXTENSIBLE_SSO} payload, not ${file}`)
}

/**
 * A profile as an administrator exports it (Apple Configurator, iMazing, another MDM), plain or signed.
 * A signed one is a DER/BER SEQUENCE: its content is read out and its signature must verify (a broken
 * one means a damaged file); the server signs the profile itself, with its own identity.
 */
function payloadsFromProfile(bytes: Buffer, file: string): FilePayloads {
  let xml = bytes
  if (bytes[0] === 0x30) {
    try {
      xml = verifySingleSigner(parseSignedData(bytes)).content
    } catch (err) {
      throw new ConfigError(FILE_VARIABLE, `${file} is not a readable signed profile: ${(err as Error).message}`)
    }
  }
  let profile: PlistDict
  try {
    profile = parsePlistDict(xml)
  } catch (err) {
    if (err instanceof PlistError) throw new ConfigError(FILE_VARIABLE, `${file} is not an XML property list profile: ${err.message}`)
    throw err
  }
  if (profile.PayloadType !== 'Configuration') throw new ConfigError(FILE_VARIABLE, `${file} is not a configuration profile (its PayloadType must be Configuration)`)
  if (profile.EncryptedPayloadContent !== undefined) throw new ConfigError(FILE_VARIABLE, `${file} is encrypted; export it unencrypted`)
  if (!Array.isArray(profile.PayloadContent)) throw new ConfigError(FILE_VARIABLE, `${file} has no PayloadContent array`)
  const out: FilePayloads = { ssoPayloads: [], certificatePayloads: [] }
  for (const p of profile.PayloadContent) {
    if (!isDict(p)) throw new ConfigError(FILE_VARIABLE, `${file} has a payload that is not a dictionary`)
    if (p.PayloadType === EXTENSIBLE_SSO) out.ssoPayloads.push(p)
    else if (CERTIFICATE_PAYLOAD_TYPES.includes(p.PayloadType as string)) out.certificatePayloads.push(p)
    else {
      // Apple: "Other payload types in the profile generate an error" on the device.
      throw new ConfigError(
        FILE_VARIABLE,
        `${file} contains a ${String(p.PayloadType)} payload; only ${EXTENSIBLE_SSO} and certificate payloads (${CERTIFICATE_PAYLOAD_TYPES.join(', ')}) are allowed`,
      )
    }
  }
  return out
}

/**
 * The content of one `com.apple.extensiblesso` payload as JSON. PayloadType and PayloadVersion are set
 * here; the builder derives PayloadIdentifier and PayloadUUID from the identifier prefix and the content.
 */
function ssoPayloadFromJson(bytes: Buffer, file: string): PlistDict {
  let json: unknown
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch (err) {
    throw new ConfigError(FILE_VARIABLE, `${file} is not valid JSON: ${(err as Error).message}`)
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ConfigError(FILE_VARIABLE, `${file} must hold a JSON object: the content of one ${EXTENSIBLE_SSO} payload`)
  }
  const payload = toPlist(json, file, '') as PlistDict
  if (payload.PayloadType !== undefined && payload.PayloadType !== EXTENSIBLE_SSO) {
    throw new ConfigError(FILE_VARIABLE, `${file}: PayloadType must be ${EXTENSIBLE_SSO} or absent`)
  }
  return { PayloadVersion: 1, ...payload, PayloadType: EXTENSIBLE_SSO }
}

const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype'])

/** JSON to plist values: plists have no null, and these keys would reach Object prototypes. */
function toPlist(value: unknown, file: string, at: string): PlistValue {
  if (value === null) throw new ConfigError(FILE_VARIABLE, `${file}: ${at || 'the value'} is null; property lists have no null`)
  if (Array.isArray(value)) return value.map((v, i) => toPlist(v, file, `${at}[${i}]`))
  if (typeof value === 'object') {
    const out: PlistDict = {}
    for (const [k, v] of Object.entries(value)) {
      if (FORBIDDEN_KEYS.has(k)) throw new ConfigError(FILE_VARIABLE, `${file}: key "${k}" is not allowed`)
      out[k] = toPlist(v, file, at ? `${at}.${k}` : k)
    }
    return out
  }
  return value as string | number | boolean
}
