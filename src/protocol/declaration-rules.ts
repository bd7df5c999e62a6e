/**
 * Declaration types of declarative device management and the shape of their `Payload`, from Apple's
 * device-management schema (declarative/declarations/**, MIT), derived by
 * scripts/derive-apple-schema.mjs into src/protocol/apple/declarations.json (PROVENANCE.md there).
 * https://developer.apple.com/documentation/devicemanagement/declarations
 *
 * Checks the envelope (declarationbase.yaml: Type, Identifier, ServerToken, Payload) and the payload's
 * top-level keys: required ones present, known ones of the right JSON type. Unknown keys pass: Apple adds
 * keys every release and devices ignore the ones they do not know.
 */
import declarationsJson from './apple/declarations.json' with { type: 'json' }
import { compareVersions, type Platform, type SchemaPlatform } from './platform.js'

/** docs/schema.md, "Type Values"; `real` is any JSON number, `data` a base64 string in JSON. */
export type ValueType = 'string' | 'integer' | 'real' | 'boolean' | 'date' | 'data' | 'array' | 'dictionary' | 'any'
/** docs/schema.yaml, allowed-enrollments. */
export type Enrollment = 'supervised' | 'device' | 'user' | 'local'

export interface PayloadKey {
  type: ValueType
  presence: 'required' | 'optional'
  /** Only where the key differs from its declaration: `introduced: null` where the platform lacks it. */
  platforms?: Partial<Record<SchemaPlatform, { introduced: string | null; allowedEnrollments?: Enrollment[] }>>
}

export interface DeclarationPlatform {
  available: true
  introduced: string
  deprecated?: string
  removed?: string
  /** Null for activations, assets and management declarations: they go with any enrollment. */
  allowedEnrollments: Enrollment[] | null
  userEnrollment: 'allowed' | 'forbidden'
  allowedScopes: ('system' | 'user')[] | null
}

export interface DeclarationTypeRules {
  file: string
  title: string
  category: 'activation' | 'configuration' | 'asset' | 'management'
  platforms: Record<SchemaPlatform, DeclarationPlatform | { available: false }>
  keys: Record<string, PayloadKey>
  /** The payload is free-form key/value pairs (com.apple.management.properties). */
  anyKeys: boolean
  apply?: string
  beta?: true
}

interface DeclarationsFile {
  source: { repository: string; license: string; release: string }
  base: { file: string; keys: Record<string, PayloadKey> }
  declarations: Record<string, DeclarationTypeRules>
}

// Generated JSON, compared with its generator's output by a test; its shape is the one above.
const TABLES = declarationsJson as unknown as DeclarationsFile

export function declarationType(type: string): DeclarationTypeRules | undefined {
  return Object.hasOwn(TABLES.declarations, type) ? TABLES.declarations[type] : undefined
}

export interface DeclarationTarget {
  platform: Platform
  osVersion?: string
  enrollment: 'user' | 'device'
}

export type DeclarationCheck = { ok: true } | { ok: false; rule: string }

/**
 * Validates a declaration as the server would serve it. With `target`, also whether that device may
 * receive it: the platform has the type (and the OS version is recent enough), and `allowed-enrollments`
 * admits the enrollment. Account-driven device enrollment counts as `device` on iOS and visionOS and as
 * `supervised` on macOS, where device enrollment supervises (PROVENANCE.md, "Account-driven device
 * enrollment"); no macOS declaration lists `device`.
 */
export function checkDeclaration(declaration: unknown, target?: DeclarationTarget): DeclarationCheck {
  if (!isDict(declaration)) return refuse('A declaration is a JSON object')
  const { Type, Identifier, ServerToken, Payload } = declaration
  if (typeof Type !== 'string' || Type === '') return refuse('Type must be a non-empty string')
  const rules = declarationType(Type)
  if (!rules) return refuse(`${Type} is not a declaration type in Apple's schema (release ${TABLES.source.release})`)
  const cite = ` (Apple schema ${rules.file})`
  // declarationbase.yaml: "The size of this string should not exceed 64 octets" is a should; not enforced.
  if (typeof Identifier !== 'string' || Identifier === '') return refuse(`Identifier must be a non-empty string (Apple schema ${TABLES.base.file})`)
  if (typeof ServerToken !== 'string' || ServerToken === '') return refuse(`ServerToken must be a non-empty string (Apple schema ${TABLES.base.file})`)
  if (!isDict(Payload)) return refuse(`Payload must be a JSON object (Apple schema ${TABLES.base.file})`)

  if (target) {
    const p = rules.platforms[target.platform]
    if (!p.available) return refuse(`${Type} is not available on ${target.platform}${cite}`)
    if (target.osVersion && (compareVersions(target.osVersion, p.introduced) ?? 0) < 0) {
      return refuse(`${Type} needs ${target.platform} ${p.introduced} or later; the device runs ${target.osVersion}${cite}`)
    }
    const as = enrollmentOf(target)
    if (p.allowedEnrollments && !p.allowedEnrollments.includes(as)) return refuse(`${Type} is not allowed in ${as} enrollment on ${target.platform}${cite}`)
  }

  for (const [key, spec] of Object.entries(rules.keys)) {
    const here = target ? spec.platforms?.[target.platform] : undefined
    const onPlatform = here === undefined || here.introduced !== null
    if (!Object.hasOwn(Payload, key)) {
      if (spec.presence === 'required' && onPlatform) return refuse(`${Type} requires Payload.${key}${cite}`)
      continue
    }
    if (!hasType(Payload[key], spec.type)) return refuse(`${Type} Payload.${key} must be ${article(spec.type)}${cite}`)
    if (target && here?.allowedEnrollments && !here.allowedEnrollments.includes(enrollmentOf(target))) {
      return refuse(`${Type} Payload.${key} is not allowed in ${enrollmentOf(target)} enrollment on ${target.platform}${cite}`)
    }
  }
  return { ok: true }
}

function enrollmentOf(target: DeclarationTarget): Enrollment {
  if (target.enrollment === 'user') return 'user'
  return target.platform === 'macOS' ? 'supervised' : 'device'
}

function hasType(value: unknown, type: ValueType): boolean {
  switch (type) {
    case 'string':
    case 'date':
    case 'data':
      return typeof value === 'string'
    case 'integer':
      return Number.isSafeInteger(value)
    case 'real':
      return typeof value === 'number' && Number.isFinite(value)
    case 'boolean':
      return typeof value === 'boolean'
    case 'array':
      return Array.isArray(value)
    case 'dictionary':
      return isDict(value)
    case 'any':
      return true
  }
}

function article(type: ValueType): string {
  return type === 'any' ? 'any value' : `${/^[aeiou]/.test(type) ? 'an' : 'a'} ${type}`
}

function isDict(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function refuse(rule: string): DeclarationCheck {
  return { ok: false, rule }
}
