/**
 * What Apple allows a server to send to a device, from Apple's device-management schema
 * (github.com/apple/device-management, MIT): which MDM commands exist on which platform and since when,
 * and what user enrollment, the macOS channels, supervision and DEP forbid, command by command and key by
 * key. The tables are derived by scripts/derive-apple-schema.mjs into src/protocol/apple/ (see
 * PROVENANCE.md there for the release and how each field is read); this module only reads them.
 *
 * Why refuse before queueing: the device would answer Error or CommandFormatError later, with no reason
 * an admin can act on; and on a personal device what user enrollment forbids (erasing a Mac, reading the
 * serial number) should not leave the server at all. The refusal names the rule and the schema file.
 */
import commandsJson from './apple/commands.json' with { type: 'json' }
import { compareVersions, PLATFORMS, type Platform, type SchemaPlatform } from './platform.js'

/** docs/schema.md, "User Enrollment Object" (and "Shared iPad Object"). */
export type Mode = 'allowed' | 'required' | 'forbidden' | 'ignored'

/** A step from a command into one of its keys (scripts/derive-apple-schema.mjs, keyRules). */
export type Segment = { key: string } | { value: string } | { item: string } | { each: true }

/** A key (or array value) more restricted than the command that contains it. */
export interface KeyRule {
  /** Readable: `ChangeManagementState`, `Queries[UDID]`, `Settings[Item=Wallpaper]`. */
  path: string
  segments: Segment[]
  userEnrollment?: Mode
  supervised?: true
  requiresDEP?: true
  deviceChannel?: false
  userChannel?: false
  sharedIPadRequired?: true
}

export interface PlatformRules {
  available: true
  introduced: string
  deprecated?: string
  removed?: string
  /** The AccessRights bit the enrollment profile must grant (`None`, `Special Case` as Apple writes them). */
  accessRights: string | null
  userEnrollment: Mode
  deviceChannel: boolean
  userChannel: boolean
  supervised: boolean
  requiresDEP: boolean
  /** Derived, not in the schema: see PROVENANCE.md, "Account-driven device enrollment". */
  accountDrivenDeviceEnrollment: boolean
  userApprovedMDM?: boolean
  userEnrollmentBehavior?: string
  sharedIPad?: { mode: Mode; deviceChannel?: boolean; userChannel?: boolean }
  keys: KeyRule[]
}

export interface CommandRules {
  /** The schema file, e.g. `mdm/commands/device.erase.yaml`. */
  file: string
  title: string
  platforms: Record<SchemaPlatform, PlatformRules | { available: false }>
}

interface CommandsFile {
  source: { repository: string; license: string; release: string }
  commands: Record<string, CommandRules>
  checkin: Record<string, CommandRules>
}

// The JSON is generated and compared with its generator's output by a test; its shape is the one above.
const TABLES = commandsJson as unknown as CommandsFile

/** The schema release the tables come from, e.g. `iOS 18.1 / macOS 15.1`. */
export const SCHEMA_RELEASE = TABLES.source.release

/** Every RequestType of the schema's mdm/commands, sorted (for documentation and OpenAPI enums). */
export function requestTypes(): string[] {
  return Object.keys(TABLES.commands).sort()
}

export function commandRules(requestType: string): CommandRules | undefined {
  return Object.hasOwn(TABLES.commands, requestType) ? TABLES.commands[requestType] : undefined
}

/** A check-in MessageType (mdm/checkin/*.yaml): platforms, user enrollment mode, channels, key rules. */
export function checkinRules(messageType: string): CommandRules | undefined {
  return Object.hasOwn(TABLES.checkin, messageType) ? TABLES.checkin[messageType] : undefined
}

export interface CommandTarget {
  /** Undefined when the device did not say: then the rules of every platform that has the command apply. */
  platform?: Platform
  /** Authenticate's OSVersion; not checked when absent or not dotted numbers. */
  osVersion?: string
  /** `user` is the macOS user channel (a request carrying EnrollmentUserID). */
  channel: 'device' | 'user'
  /** Account-driven user enrollment, or account-driven device enrollment. Neither is ever ADE/DEP. */
  enrollment: 'user' | 'device'
}

export type RuleCheck = { ok: true } | { ok: false; rule: string }

const OK: RuleCheck = { ok: true }

/**
 * Whether `command` (the plist's `Command` dictionary) may be queued for `target`.
 *
 * An unknown RequestType is refused: the device would answer CommandFormatError if it does not know it
 * either, and if it does (a command newer than the schema release) the server cannot tell whether user
 * enrollment forbids it, so it fails closed; regenerating the tables from a newer schema admits it.
 * Unknown keys inside a known command pass: Apple adds keys every release and devices ignore the ones
 * they do not know. Keys whose user enrollment mode is `ignored` pass too: the device drops them.
 */
export function checkCommand(command: Record<string, unknown>, target: CommandTarget): RuleCheck {
  const requestType = command.RequestType
  if (typeof requestType !== 'string' || requestType === '') return refuse('The command has no RequestType')
  const rules = commandRules(requestType)
  if (!rules) {
    return refuse(`${requestType} is not a command in Apple's schema (release ${SCHEMA_RELEASE}); unknown RequestTypes are refused until src/protocol/apple is regenerated from a schema that has it`)
  }
  const cite = ` (Apple schema ${rules.file})`
  // Without a platform: the user channel exists only on macOS here (Shared iPad needs ADE); on the device
  // channel every platform that has the command must allow it.
  const candidates = target.platform ? [target.platform] : target.channel === 'user' ? (['macOS'] as const) : PLATFORMS.filter((p) => rules.platforms[p].available)
  if (candidates.length === 0) return refuse(`${requestType} exists on none of ${PLATFORMS.join(', ')}${cite}`)
  for (const platform of candidates) {
    const result = checkOn(requestType, rules, platform, command, target)
    if (!result.ok) return target.platform ? refuse(result.rule + cite) : refuse(`${result.rule}${cite}; the target's platform is unknown, so every platform's rules apply`)
  }
  return OK
}

function checkOn(requestType: string, rules: CommandRules, platform: Platform, command: Record<string, unknown>, target: CommandTarget): RuleCheck {
  const p = rules.platforms[platform]
  if (!p.available) return refuse(`${requestType} is not available on ${platform}`)
  if (target.platform && target.osVersion) {
    if ((compareVersions(target.osVersion, p.introduced) ?? 0) < 0) return refuse(`${requestType} needs ${platform} ${p.introduced} or later; the device runs ${target.osVersion}`)
    if (p.removed && (compareVersions(target.osVersion, p.removed) ?? -1) >= 0) return refuse(`${requestType} was removed in ${platform} ${p.removed}`)
  }
  if (target.channel === 'user' && platform !== 'macOS') return refuse(`${platform} has no user channel outside Shared iPad, which account-driven enrollment never sets up`)
  const own = restriction(requestType, { ...p, sharedIPadRequired: p.sharedIPad?.mode === 'required' || undefined }, platform, target)
  if (own) return refuse(own)
  for (const key of p.keys) {
    if (!present(command, key.segments)) continue
    const why = restriction(`${requestType} with ${key.path}`, key, platform, target)
    if (why) return refuse(why)
  }
  return OK
}

type Restrictions = Pick<KeyRule, 'sharedIPadRequired'> & { userEnrollment?: Mode; supervised?: boolean; requiresDEP?: boolean; deviceChannel?: boolean; userChannel?: boolean }

/** The first rule of the schema that `subject` breaks for `target`, as a sentence; undefined if none. */
function restriction(subject: string, r: Restrictions, platform: Platform, target: CommandTarget): string | undefined {
  if (target.enrollment === 'user' && r.userEnrollment === 'forbidden') return `${subject} is forbidden under user enrollment on ${platform}`
  if (target.enrollment === 'device' && r.userEnrollment === 'required') return `${subject} requires user enrollment on ${platform}`
  if (platform === 'macOS' && target.channel === 'user' && r.userChannel === false) return `${subject} is not supported on the macOS user channel`
  if (platform === 'macOS' && target.channel === 'device' && r.deviceChannel === false) return `${subject} is not supported on the macOS device channel`
  if (r.requiresDEP) return `${subject} requires a device enrolled through Automated Device Enrollment (DEP) on ${platform}; account-driven enrollment is not`
  if (r.sharedIPadRequired) return `${subject} applies only to Shared iPad, which account-driven enrollment never sets up`
  // A Mac in device enrollment is supervised (macOS 11+); user enrollment never is; see PROVENANCE.md.
  if (r.supervised && !(platform === 'macOS' && target.enrollment === 'device')) {
    return `${subject} requires a supervised device on ${platform}; ${target.enrollment === 'user' ? 'user enrollment is never supervised' : 'account-driven device enrollment does not supervise iPhone, iPad or Vision Pro'}`
  }
  return undefined
}

/** Whether the command contains the key or array value the segments lead to. */
function present(value: unknown, segments: readonly Segment[]): boolean {
  const [first, ...rest] = segments
  if (!first) return true
  if ('key' in first) return isDict(value) && Object.hasOwn(value, first.key) && present(value[first.key], rest)
  if (!Array.isArray(value)) return false
  if ('value' in first) return value.includes(first.value)
  if ('item' in first) return value.some((v) => isDict(v) && v.Item === first.item && present(v, rest))
  return value.some((v) => present(v, rest))
}

function isDict(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array) && !(value instanceof Date)
}

function refuse(rule: string): RuleCheck {
  return { ok: false, rule }
}

export { compareVersions, platformOf, PLATFORMS, type Platform, type SchemaPlatform } from './platform.js'
export { checkDeclaration, declarationType, type DeclarationCheck, type DeclarationTarget, type DeclarationTypeRules } from './declaration-rules.js'
