/**
 * Canonical forms for content the server must rebuild identically in any process: sorted-key JSON for
 * declaration ServerTokens, sorted-key plists for profiles, and name-based UUIDs for payloads.
 *
 * Why: a device that was handed declarations (or a profile) during enrollment compares them with what
 * the server serves later by Identifier and ServerToken (PROTOCOL.md sections 5 and 9); a random or
 * order-dependent value would make it remove and reinstall them, or drop them.
 */
import { createHash } from 'node:crypto'
import { isDict, type PlistDict, type PlistValue } from './plist.js'

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue }
export type JsonObject = { [key: string]: JsonValue }

function compareKeys(a: string, b: string): number {
  // Code-unit order, the same in every locale and process (localeCompare is not).
  return a < b ? -1 : a > b ? 1 : 0
}

/** JSON with object keys sorted at every level and no white space: equal values give equal strings. */
export function canonicalJson(value: JsonValue): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value).sort(compareKeys)
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k]!)}`).join(',')}}`
  }
  if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError('JSON cannot hold a non-finite number')
  return JSON.stringify(value)
}

/** `value` with dict keys sorted at every level (arrays keep their order): plist output becomes canonical. */
export function sortPlistKeys<T extends PlistValue>(value: T): T {
  if (Array.isArray(value)) return value.map(sortPlistKeys) as T
  if (isDict(value)) {
    const out: PlistDict = {}
    for (const k of Object.keys(value).sort(compareKeys)) out[k] = sortPlistKeys(value[k]!)
    return out as T
  }
  return value
}

/** `value` with keys sorted at every level. */
export function sortJsonKeys<T extends JsonValue>(value: T): T {
  if (Array.isArray(value)) return value.map(sortJsonKeys) as T
  if (value !== null && typeof value === 'object') {
    const out: JsonObject = {}
    for (const k of Object.keys(value).sort(compareKeys)) out[k] = sortJsonKeys(value[k]!)
    return out as T
  }
  return value
}

export function sha256Hex(input: string | Uint8Array): string {
  return createHash('sha256').update(input).digest('hex')
}

/** This project's namespace for name-based (version 5) UUIDs; any fixed value works, it must never change. */
const UUID_NAMESPACE = Buffer.from('10369f6b2c574399b02a373004fb7545', 'hex')

/**
 * A name-based UUID (RFC 9562 section 5.5, SHA-1, version 5) in upper case, as Apple writes PayloadUUIDs:
 * the same name gives the same UUID in every process, a different name a different one.
 */
export function nameBasedUuid(name: string): string {
  const hash = createHash('sha1').update(UUID_NAMESPACE).update(name, 'utf8').digest()
  hash[6] = (hash[6]! & 0x0f) | 0x50
  hash[8] = (hash[8]! & 0x3f) | 0x80
  const hex = hash.subarray(0, 16).toString('hex').toUpperCase()
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}
