/**
 * The schema half of the one profile checker (profile-rules.ts `checkProfile`, which every caller uses):
 * a configuration profile (the `Configuration` plist) against Apple's profile schema
 * (github.com/apple/device-management mdm/profiles, MIT) for one platform and one kind of account-driven
 * enrollment. The rules are derived by scripts/derive-apple-schema.mjs into src/protocol/apple/profiles.json
 * (PROVENANCE.md there says how each schema field is read); this module only reads them. What the schema
 * cannot say (EnrollmentMode against discovery, where IdentityCertificateUUID points, the push topic,
 * AccessRights for device enrollment, ...) is profile-rules.ts's; no rule is checked in both.
 *
 * A device cancels an enrollment on a profile it does not accept, and says nothing the server can see,
 * so the check is strict: a key the schema does not list, a key the platform does not have, a key that
 * user enrollment forbids *or ignores* (the device may cancel on a key it does not expect: PROTOCOL.md
 * section 6 has AccessRights, "ignored" under user enrollment in the schema, make a BYOD enrollment fail),
 * a key only for supervised or DEP devices, a wrong type, a missing required key, a value outside the
 * schema's list, range or format: each an `error`.
 *
 * Two `warning`s, which a device does not cancel on:
 * - a key the schema marks as ignored on a platform (`n/a` there, and its description says "ignored
 *   elsewhere": extensible SSO's TeamIdentifier, required on macOS; derived as `ignoredWhereUnavailable`).
 *   The device drops it. This differs from user enrollment's `ignored` mode above on purpose: for that one
 *   Apple documents a device that cancels (AccessRights), for this one nobody does, and the same payload
 *   must carry the key for the Macs it is also meant for. esso-rules.ts accepts the key for the same reason.
 * - a URL whose format is `^https://` given as plain http on a loopback address: fine on this machine (the
 *   simulator against `npm start`), never for a real device.
 *
 * Not checked: per-key `introduced`/`removed` against a device's OS version (the rules record them; the
 * profile is checked without one); prose-only constraints (PROVENANCE.md lists them). A plist integer and
 * an integral real parse to the same JavaScript number, so `<real>2.0</real>` passes where an integer is due.
 */
import profilesJson from './apple/profiles.json' with { type: 'json' }
import type { Mode } from './command-rules.js'
import type { Platform } from './platform.js'
import { isDict, type PlistDict, type PlistValue } from './plist.js'

export type ValueType = 'string' | 'integer' | 'real' | 'boolean' | 'date' | 'data' | 'array' | 'dictionary' | 'any'

/** A payload's or key's effective supportedOS on one platform (inherited and updated, schema.md). */
export interface PlatformRule {
  available: true
  introduced: string
  deprecated?: string
  removed?: string
  userEnrollment: Mode
  supervised: boolean
  requiresDEP: boolean
  /** Derived, not in the schema: PROVENANCE.md, "Account-driven device enrollment". */
  accountDrivenDeviceEnrollment: boolean
  userEnrollmentBehavior?: string
  /** Payloads only: whether more than one may be installed. */
  multiple?: boolean
}

export type Availability = PlatformRule | { available: false }

/** What a value must be: its type, allowed values and, for containers, what they contain. */
export interface ValueRule {
  type: ValueType
  rangelist?: (string | number)[]
  range?: { min?: number; max?: number }
  /** A regular expression the whole string must match (Apple writes the anchors). */
  format?: string
  default?: string | number | boolean
  valueType?: string
  /** Dictionary keys; absent (and no anyKeys) means the schema does not describe the dictionary. */
  keys?: Record<string, KeyRule>
  /** The rule for keys a dictionary does not list (the schema's `ANY`); absent means they are unknown. */
  anyKeys?: ValueRule
  /** An array's elements. */
  items?: ValueRule
  /** An array's length (from its item's `repetition`). */
  repetition?: { min: number; max: number }
}

export interface KeyRule extends ValueRule {
  presence: 'required' | 'optional'
  platforms: Record<Platform, Availability>
  /** Required in an account-driven enrollment, said only in the key's description (quoted in accountDrivenSource). */
  accountDrivenPresence?: 'required'
  accountDrivenSource?: string
  /** Where the platform does not have the key, the device ignores it, said only in the description (quoted in ignoredSource). */
  ignoredWhereUnavailable?: boolean
  ignoredSource?: string
}

/** One broken rule: `error`, a device cancels (or refuses the profile); `warning`, worth knowing. */
export interface ProfileFinding {
  severity: 'error' | 'warning'
  /** One sentence: the rule, and what a device does about it. */
  rule: string
}

export interface PayloadRules {
  /** The schema file, e.g. `mdm/profiles/com.apple.mdm.yaml`. */
  file: string
  title: string
  platforms: Record<Platform, Availability>
  keys: Record<string, KeyRule>
  anyKeys?: ValueRule
}

interface ProfilesFile {
  source: { repository: string; license: string; release: string }
  configuration: PayloadRules & { payloadType: string }
  common: PayloadRules
  payloads: Record<string, PayloadRules>
}

// The JSON is generated and compared with its generator's output by a test; its shape is the one above.
const TABLES = profilesJson as unknown as ProfilesFile

/** The schema release the rules come from, e.g. `iOS 18.1 / macOS 15.1`. */
export const PROFILE_SCHEMA_RELEASE = TABLES.source.release

/** The payload types the rules cover (those the server emits), sorted. */
export function profilePayloadTypes(): string[] {
  return Object.keys(TABLES.payloads).sort()
}

/** The rules of one payload type, without the common payload keys; undefined when not derived. */
export function profilePayloadRules(payloadType: string): PayloadRules | undefined {
  return Object.hasOwn(TABLES.payloads, payloadType) ? TABLES.payloads[payloadType] : undefined
}

export interface ProfileTarget {
  platform: Platform
  /** Account-driven user enrollment (BYOD) or account-driven device enrollment (ADDE). */
  enrollment: 'user' | 'device'
}

/**
 * Every finding of Apple's schema on `profile` for `target`, in profile order; one sentence each naming the
 * payload and key. The profile is the plist inside the CMS signature. Use profile-rules.ts `checkProfile`:
 * this is half of it.
 */
export function schemaFindings(profile: PlistDict, target: ProfileTarget): ProfileFinding[] {
  const out: ProfileFinding[] = []
  const top = TABLES.configuration
  const os = target.platform
  const topPlatform = top.platforms[os]
  if (!topPlatform.available) return [{ severity: 'error', rule: `configuration profiles are not available on ${os}` }]
  const check = new Checker(target, out)
  check.keys(profile, top.keys, top.anyKeys, { where: top.payloadType, file: top.file, path: '' }, topPlatform, new Set(['PayloadContent']))

  const content = profile.PayloadContent
  if (!Array.isArray(content)) return out
  const types = content.map((p) => (isDict(p) && typeof p.PayloadType === 'string' ? p.PayloadType : undefined))
  content.forEach((payload, i) => {
    const type = types[i]
    const at = `${top.payloadType}: PayloadContent[${i}]`
    if (!isDict(payload)) return check.error(`${at} must be a dictionary, not ${describe(payload)}`)
    if (type === undefined) return check.error(`${at} has no PayloadType string`)
    const rules = profilePayloadRules(type)
    if (!rules) return check.error(`${at}: unknown payload type ${type} (the rules derived from Apple's schema cover ${profilePayloadTypes().join(', ')})`)
    const where = types.filter((t) => t === type).length > 1 ? `${type} (PayloadContent[${i}])` : type
    const platform = rules.platforms[os]
    if (!platform.available) return check.error(`${where} is not available on ${os}`)
    check.restrictions(where, topPlatform, platform)
    check.keys(payload, { ...TABLES.common.keys, ...rules.keys }, rules.anyKeys, { where, file: rules.file, path: '' }, platform)
  })
  for (const type of new Set(types)) {
    const platform = type === undefined ? undefined : profilePayloadRules(type)?.platforms[os]
    const n = types.filter((t) => t === type).length
    if (platform?.available && platform.multiple === false && n > 1) check.error(`${type} appears ${n} times; Apple's schema allows one on ${os}`)
  }
  return out
}

interface Place {
  /** `Configuration` or the payload type. */
  where: string
  file: string
  /** The key path inside it, `PayloadContent.Subject[0]`; empty for the payload itself. */
  path: string
}

class Checker {
  constructor(
    private readonly target: ProfileTarget,
    private readonly out: ProfileFinding[],
  ) {}

  error(rule: string): void {
    this.out.push({ severity: 'error', rule })
  }

  warning(rule: string): void {
    this.out.push({ severity: 'warning', rule })
  }

  private at(place: Place): string {
    return `${place.where}: ${place.path}`
  }

  /** The keys of a dictionary; `skip` names keys whose values are checked elsewhere (the payloads). */
  keys(dict: PlistDict, keys: Record<string, KeyRule>, anyKeys: ValueRule | undefined, place: Place, parent: PlatformRule, skip = new Set<string>()): void {
    const os = this.target.platform
    const child = (name: string): Place => ({ ...place, path: place.path ? `${place.path}.${name}` : name })
    for (const [name, value] of Object.entries(dict)) {
      const rule = Object.hasOwn(keys, name) ? keys[name] : undefined
      if (!rule) {
        if (anyKeys) this.value(value, anyKeys, child(name), parent)
        else this.error(`${this.at(child(name))} is not a key in Apple's schema (${place.file})`)
        continue
      }
      const platform = rule.platforms[os]
      if (!platform.available) {
        if (rule.ignoredWhereUnavailable) this.warning(`${this.at(child(name))} is ignored on ${os}; Apple's schema: "${rule.ignoredSource}"`)
        else this.error(`${this.at(child(name))} is not available on ${os}`)
        continue
      }
      this.restrictions(this.at(child(name)), parent, platform)
      if (!skip.has(name)) this.value(value, rule, child(name), platform)
      else this.type(value, rule, child(name))
    }
    for (const [name, rule] of Object.entries(keys)) {
      if (Object.hasOwn(dict, name) || !rule.platforms[os].available) continue
      if (rule.presence === 'required') this.error(`${this.at(child(name))} is missing (required)`)
      else if (rule.accountDrivenPresence === 'required') this.error(`${this.at(child(name))} is missing; Apple's schema: "${rule.accountDrivenSource}"`)
    }
  }

  /**
   * What user enrollment or account-driven device enrollment make of a payload or key, reported where it
   * starts (not again for each key of a payload that has it).
   */
  restrictions(label: string, parent: PlatformRule, own: PlatformRule): void {
    const os = this.target.platform
    if (this.target.enrollment === 'user') {
      const mode = own.userEnrollment
      if ((mode === 'forbidden' || mode === 'ignored') && parent.userEnrollment !== mode) this.error(`${label} is ${mode} under user enrollment on ${os}`)
      if (own.supervised && !parent.supervised) this.error(`${label} requires a supervised device on ${os}; user enrollment is never supervised`)
      if (own.requiresDEP && !parent.requiresDEP) this.error(`${label} requires Automated Device Enrollment on ${os}; account-driven enrollment is not`)
      return
    }
    if (own.accountDrivenDeviceEnrollment || !parent.accountDrivenDeviceEnrollment) return
    if (own.requiresDEP) this.error(`${label} requires Automated Device Enrollment on ${os}; account-driven enrollment is not`)
    else if (own.userEnrollment === 'required') this.error(`${label} is only for user enrollment on ${os} (userenrollment mode required)`)
    else if (own.supervised) this.error(`${label} requires a supervised device on ${os}; account-driven device enrollment does not supervise it`)
    else this.error(`${label} is not available to account-driven device enrollment on ${os}`)
  }

  private type(value: PlistValue, rule: ValueRule, place: Place): boolean {
    if (hasType(value, rule.type)) return true
    this.error(`${this.at(place)} must be ${ARTICLE[rule.type]}, not ${describe(value)}`)
    return false
  }

  value(value: PlistValue, rule: ValueRule, place: Place, platform: PlatformRule): void {
    if (!this.type(value, rule, place)) return
    const at = this.at(place)
    if (rule.rangelist && (typeof value === 'string' || typeof value === 'number') && !rule.rangelist.includes(value)) {
      this.error(`${at} is ${JSON.stringify(value)}, not one of ${rule.rangelist.join(', ')}`)
    }
    if (rule.range && typeof value === 'number') {
      if (rule.range.min !== undefined && value < rule.range.min) this.error(`${at} is ${value}, below the minimum ${rule.range.min}`)
      if (rule.range.max !== undefined && value > rule.range.max) this.error(`${at} is ${value}, above the maximum ${rule.range.max}`)
    }
    if (rule.format !== undefined && typeof value === 'string' && !new RegExp(rule.format).test(value)) {
      if (rule.format === HTTPS_FORMAT && isLoopbackHttp(value)) this.warning(`${at} is ${value}: plain http on a loopback address, fine for this machine, but an Apple device only enrolls over https`)
      else this.error(`${at} is ${JSON.stringify(value)}, which does not match ${rule.format}`)
    }
    if (isDict(value) && (rule.keys || rule.anyKeys)) this.keys(value, rule.keys ?? {}, rule.anyKeys, place, platform)
    if (Array.isArray(value)) {
      const r = rule.repetition
      if (r && (value.length < r.min || value.length > r.max)) {
        this.error(`${at} has ${value.length} item${value.length === 1 ? '' : 's'}; Apple's schema wants ${r.min === r.max ? r.min : `${r.min} to ${r.max}`}`)
      }
      if (rule.items) value.forEach((v, i) => this.value(v, rule.items!, { ...place, path: `${place.path}[${i}]` }, platform))
    }
  }
}

/** The schema's format of every URL a device must reach over TLS (ServerURL, CheckInURL, ...). */
const HTTPS_FORMAT = '^https://.*$'

function isLoopbackHttp(value: string): boolean {
  try {
    const url = new URL(value)
    return url.protocol === 'http:' && isLoopback(url.hostname)
  } catch {
    return false
  }
}

/** localhost, *.localhost, 127.0.0.0/8 and ::1. */
export function isLoopback(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase()
  return h === 'localhost' || h.endsWith('.localhost') || /^127\.\d+\.\d+\.\d+$/.test(h) || h === '::1'
}

const ARTICLE: Record<ValueType, string> = {
  string: 'a string',
  integer: 'an integer',
  real: 'a number',
  boolean: 'a boolean',
  date: 'a date',
  data: 'data',
  array: 'an array',
  dictionary: 'a dictionary',
  any: 'a value',
}

function hasType(value: PlistValue, type: ValueType): boolean {
  switch (type) {
    case 'string':
      return typeof value === 'string'
    case 'integer':
      return typeof value === 'number' && Number.isSafeInteger(value)
    case 'real':
      return typeof value === 'number' && Number.isFinite(value)
    case 'boolean':
      return typeof value === 'boolean'
    case 'date':
      return value instanceof Date
    case 'data':
      return value instanceof Uint8Array
    case 'array':
      return Array.isArray(value)
    case 'dictionary':
      return isDict(value)
    case 'any':
      return true
  }
}

function describe(value: PlistValue): string {
  if (typeof value === 'string') return 'a string'
  if (typeof value === 'number') return Number.isInteger(value) ? 'an integer' : 'a real'
  if (typeof value === 'boolean') return 'a boolean'
  if (value instanceof Date) return 'a date'
  if (value instanceof Uint8Array) return 'data'
  if (Array.isArray(value)) return 'an array'
  if (isDict(value)) return 'a dictionary'
  return String(value)
}
