/**
 * Service discovery for account-driven enrollment (PROTOCOL.md section 1): the device GETs
 * `https://<domain>/.well-known/com.apple.remotemanagement?user-identifier=<id>&model-family=<family>`
 * and expects `{"Servers":[{"Version":"mdm-byod","BaseURL":...}]}`, or a 403 JSON refusal it can show.
 * https://developer.apple.com/documentation/devicemanagement/wellknown
 */
import { ForbiddenError } from '../errors.js'

/** Every `model-family` value Apple's clients send. */
export const MODEL_FAMILIES = ['AppleTV', 'iPad', 'iPhone', 'Mac', 'RealityDevice', 'Watch'] as const

/** The families with user enrollment (iOS/iPadOS 17+, macOS 14+, visionOS 1.1+); tvOS and watchOS have none. */
export const USER_ENROLLMENT_FAMILIES = ['iPhone', 'iPad', 'Mac', 'RealityDevice'] as const
export type ModelFamily = (typeof USER_ENROLLMENT_FAMILIES)[number]

/** `Version` for user enrollment; the profile's EnrollmentMode must be `BYOD` to match it. */
export const BYOD_VERSION = 'mdm-byod'
/** `Version` for account-driven device enrollment; the profile's EnrollmentMode must be `ADDE`. */
export const ADDE_VERSION = 'mdm-adde'

export interface WellKnownResponse {
  Servers: [{ Version: typeof BYOD_VERSION | typeof ADDE_VERSION; BaseURL: string }]
}

export function wellKnownResponse(baseUrl: string, enrollmentType: 'user' | 'device' = 'user'): WellKnownResponse {
  return { Servers: [{ Version: enrollmentType === 'device' ? ADDE_VERSION : BYOD_VERSION, BaseURL: baseUrl }] }
}

/**
 * The refusal iOS 17.5+ understands: 403 with this JSON. `message` is shown to the user, `description`
 * goes to the device's logs (and ours).
 */
export class WellKnownFailure extends ForbiddenError {
  readonly body: { code: 'com.apple.well-known.failed'; description: string; message: string }

  constructor(description: string, userMessage: string) {
    super(description, { code: 'com.apple.well-known.failed' })
    this.body = { code: 'com.apple.well-known.failed', description, message: userMessage }
  }
}

const DOMAIN_NAME = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$/

/** A lower-case DNS name with at least two labels (IDNs in their xn-- form). */
export function isDomainName(value: string): boolean {
  return DOMAIN_NAME.test(value)
}

export interface UserIdentifier {
  /** As the user typed it (case kept: it may become AssignedManagedAppleID). */
  value: string
  /** The part after the last `@`, lower-cased: the client splits there too. */
  domain: string
}

/** Reads `user-identifier`; returns why not when it is missing or not `local@domain`. */
export function parseUserIdentifier(raw: unknown): UserIdentifier | { problem: string } {
  if (raw === undefined) return { problem: 'user-identifier is missing' }
  if (typeof raw !== 'string') return { problem: 'user-identifier is given more than once' }
  if (raw.length > 320 || /[\s\u0000-\u001f\u007f]/.test(raw)) return { problem: 'user-identifier is not an account name' }
  const at = raw.lastIndexOf('@')
  const local = raw.slice(0, at)
  const domain = raw.slice(at + 1).toLowerCase()
  if (at < 1 || local.length > 64 || !isDomainName(domain)) return { problem: 'user-identifier is not of the form name@domain' }
  return { value: raw, domain }
}

/**
 * The family of a `PRODUCT` the device reports in its enroll request (`iPhone12,1`, `MacBookPro18,1`,
 * `VirtualMac2,1`, ...), so enroll applies the same family policy as discovery. Undefined when unknown.
 */
export function modelFamilyOfProduct(product: string): (typeof MODEL_FAMILIES)[number] | undefined {
  if (/^iPhone\d/.test(product)) return 'iPhone'
  if (/^iPad\d/.test(product)) return 'iPad'
  if (/^(Mac|MacBook(Air|Pro)?|iMac(Pro)?|Macmini|MacPro|VirtualMac)\d/.test(product)) return 'Mac'
  if (/^RealityDevice\d/.test(product)) return 'RealityDevice'
  if (/^AppleTV\d/.test(product)) return 'AppleTV'
  if (/^Watch\d/.test(product)) return 'Watch'
  return undefined
}

/** The request a device sends for `user-identifier` (the device simulator's side). `base` is `https://<domain>`. */
export function discoveryRequestUrl(base: string, userIdentifier: string, modelFamily: string): string {
  const url = new URL('/.well-known/com.apple.remotemanagement', base)
  url.searchParams.set('user-identifier', userIdentifier)
  url.searchParams.set('model-family', modelFamily)
  return url.toString()
}

/**
 * Reads a discovery answer as the device does: one server, `Version` and an absolute `BaseURL`. Returns
 * why not otherwise. Versions other than mdm-byod are read too (`mdm-adde`): the caller decides.
 */
export function readWellKnownResponse(json: unknown): { version: string; baseUrl: string } | { problem: string } {
  const servers = (json as { Servers?: unknown } | null)?.Servers
  if (!Array.isArray(servers) || servers.length === 0) return { problem: 'no Servers array' }
  if (servers.length > 1) return { problem: `Servers has ${servers.length} items; Apple documents one` }
  const server = servers[0] as { Version?: unknown; BaseURL?: unknown }
  if (typeof server?.Version !== 'string') return { problem: 'Servers[0].Version is missing' }
  if (typeof server.BaseURL !== 'string') return { problem: 'Servers[0].BaseURL is missing' }
  try {
    new URL(server.BaseURL)
  } catch {
    return { problem: `Servers[0].BaseURL is not an absolute URL: ${JSON.stringify(server.BaseURL.slice(0, 80))}` }
  }
  return { version: server.Version, baseUrl: server.BaseURL }
}
