/**
 * The plist inside an enroll request's CMS (PROTOCOL.md section 2): `PRODUCT`, `VERSION` and `LANGUAGE`.
 * Under user enrollment the device sends no UDID or serial number; anything else is ignored.
 */
import { buildPlist, parsePlistDict, PlistError } from './plist.js'

export interface DeviceAttributes {
  /** Model identifier, e.g. `iPhone12,1`. */
  product?: string
  /** OS build, e.g. `19H12`. */
  version?: string
  /** e.g. `ja-JP`. */
  language?: string
}

const KEYS = { product: 'PRODUCT', version: 'VERSION', language: 'LANGUAGE' } as const

/** Throws PlistError (400) when the content is not a small XML plist dict with string values for these keys. */
export function parseEnrollRequest(content: Uint8Array): DeviceAttributes {
  const dict = parsePlistDict(content, { maxBytes: 16 * 1024, maxDepth: 8 })
  const out: DeviceAttributes = {}
  for (const [field, key] of Object.entries(KEYS) as [keyof DeviceAttributes, string][]) {
    const value = dict[key]
    if (value === undefined) continue
    if (typeof value !== 'string' || !/^[\x20-\x7e]{1,64}$/.test(value)) throw new PlistError(`${key} must be a short printable string`)
    out[field] = value
  }
  return out
}

/** The plist a device signs into its enroll request (the simulator's side of `parseEnrollRequest`). */
export function buildEnrollRequest(attributes: DeviceAttributes): Buffer {
  const dict: Record<string, string> = {}
  for (const [field, key] of Object.entries(KEYS) as [keyof DeviceAttributes, string][]) {
    const value = attributes[field]
    if (value !== undefined) dict[key] = value
  }
  return Buffer.from(buildPlist(dict), 'utf8')
}
