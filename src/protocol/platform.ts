/**
 * Platforms as Apple's device-management schema names them (supportedOS in
 * github.com/apple/device-management, docs/schema.md), and the dotted versions it compares.
 */
import { modelFamilyOfProduct } from './discovery.js'

/** iPadOS is `iOS` in Apple's schema. tvOS and watchOS have no account-driven enrollment. */
export type Platform = 'iOS' | 'macOS' | 'visionOS'
export const PLATFORMS: readonly Platform[] = ['iOS', 'macOS', 'visionOS']
/** Every platform the schema describes. */
export type SchemaPlatform = Platform | 'tvOS' | 'watchOS'

/**
 * The platform of a device from Authenticate's `ProductName` (`iPhone12,1`, `iPad13,4`, `MacBookPro18,1`,
 * `Mac14,2`, `VirtualMac2,1`, `RealityDevice14,1`), else from service discovery's `model-family`.
 * Undefined for tvOS, watchOS and anything unrecognised.
 */
export function platformOf(productName?: string, modelFamily?: string): Platform | undefined {
  const family = (productName ? modelFamilyOfProduct(productName) : undefined) ?? modelFamily
  if (family === 'iPhone' || family === 'iPad') return 'iOS'
  if (family === 'Mac') return 'macOS'
  if (family === 'RealityDevice') return 'visionOS'
  return undefined
}

/** Dotted numeric versions: negative when a < b, 0 when equal (`17` = `17.0`). Undefined unless both are `N(.N)*`. */
export function compareVersions(a: string, b: string): number | undefined {
  if (!/^\d+(\.\d+)*$/.test(a) || !/^\d+(\.\d+)*$/.test(b)) return undefined
  const x = a.split('.').map(Number)
  const y = b.split('.').map(Number)
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0)
    if (d !== 0) return d
  }
  return 0
}
