/**
 * Declarative device management over the check-in channel: the `DeclarativeManagement` message's
 * `Endpoint` and the JSON the server answers (PROTOCOL.md section 9).
 * https://developer.apple.com/documentation/devicemanagement/declarative-management
 *
 * Until this server manages declarations it serves the empty set, consistently: `tokens` and
 * `declaration-items` name the same DeclarationsToken, so a device that syncs finds nothing to apply and
 * nothing to remove, and no `declaration/...` exists.
 */
import { createHash } from 'node:crypto'
import { canonicalJson, sha256Hex, sortJsonKeys, type JsonObject } from './canonical.js'

/** A DeclarationsToken for the empty set, the same on every server and every request. */
export const EMPTY_DECLARATIONS_TOKEN = createHash('sha256').update('byod-mdm declarations: none').digest('hex')

export type DeclarativeEndpoint =
  | { kind: 'tokens' }
  | { kind: 'declaration-items' }
  | { kind: 'status' }
  | { kind: 'declaration'; type: string; identifier: string }
  | { kind: 'unknown' }

/** https://developer.apple.com/documentation/devicemanagement/declarativemanagementrequest (Endpoint) */
export function parseDeclarativeEndpoint(endpoint: string): DeclarativeEndpoint {
  if (endpoint === 'tokens' || endpoint === 'declaration-items' || endpoint === 'status') return { kind: endpoint }
  const m = /^declaration\/(activation|configuration|asset|management)\/([^/]+)$/.exec(endpoint)
  return m ? { kind: 'declaration', type: m[1]!, identifier: m[2]! } : { kind: 'unknown' }
}

/** https://developer.apple.com/documentation/devicemanagement/tokensresponse */
export interface TokensResponse {
  SyncTokens: { DeclarationsToken: string; Timestamp: string }
}

/** https://developer.apple.com/documentation/devicemanagement/declarationitemsresponse */
export interface DeclarationItemsResponse {
  Declarations: { Activations: unknown[]; Configurations: unknown[]; Assets: unknown[]; Management: unknown[] }
  DeclarationsToken: string
}

/** `since`: when the set became what it is (for the empty set: when the enrollment began). */
export function emptyTokensResponse(since: Date): TokensResponse {
  return { SyncTokens: { DeclarationsToken: EMPTY_DECLARATIONS_TOKEN, Timestamp: `${since.toISOString().slice(0, 19)}Z` } }
}

export function emptyDeclarationItemsResponse(): DeclarationItemsResponse {
  return { Declarations: { Activations: [], Configurations: [], Assets: [], Management: [] }, DeclarationsToken: EMPTY_DECLARATIONS_TOKEN }
}

/**
 * One declaration as the device fetches it (`declaration/<kind>/<Identifier>`) or receives it Base64'd
 * in an Enrollment SSO document. Apple, DeclarationBase (declarative/declarations/declarationbase.yaml):
 * Identifier and ServerToken "should not exceed 64 octets".
 * https://developer.apple.com/documentation/devicemanagement/declarationbase
 */
export interface Declaration {
  Type: string
  Identifier: string
  ServerToken: string
  Payload: JsonObject
}

/**
 * A ServerToken that is a digest of the declaration's content (Type, Identifier and canonical Payload):
 * it changes exactly when the content does, in any process, and is 64 hex characters, Apple's limit.
 */
export function declarationServerToken(type: string, identifier: string, payload: JsonObject): string {
  return sha256Hex(canonicalJson({ Type: type, Identifier: identifier, Payload: payload }))
}

/** A declaration with its keys sorted and its ServerToken derived from its content. */
export function makeDeclaration(type: string, identifier: string, payload: JsonObject): Declaration {
  const sorted = sortJsonKeys(payload)
  return { Type: type, Identifier: identifier, ServerToken: declarationServerToken(type, identifier, sorted), Payload: sorted }
}

/** A declaration as listed in declaration-items: the device fetches those whose ServerToken it lacks. */
export interface DeclarationItem {
  Identifier: string
  ServerToken: string
}

const CATEGORIES = ['Activations', 'Configurations', 'Assets', 'Management'] as const
/** `declaration/<kind>/<Identifier>`: the kind is the category in the singular, lower case. */
const KIND: Record<(typeof CATEGORIES)[number], string> = { Activations: 'activation', Configurations: 'configuration', Assets: 'asset', Management: 'management' }

/** The device's reading of `tokens`: the DeclarationsToken, or why not. */
export function readTokensResponse(json: unknown): { declarationsToken: string; timestamp?: string } | { problem: string } {
  const sync = (json as { SyncTokens?: { DeclarationsToken?: unknown; Timestamp?: unknown } } | null)?.SyncTokens
  if (typeof sync?.DeclarationsToken !== 'string') return { problem: 'SyncTokens.DeclarationsToken is missing' }
  return { declarationsToken: sync.DeclarationsToken, timestamp: typeof sync.Timestamp === 'string' ? sync.Timestamp : undefined }
}

/** The device's reading of `declaration-items`: every item with the endpoint that serves it, or why not. */
export function readDeclarationItems(json: unknown): { declarationsToken: string; items: (DeclarationItem & { endpoint: string })[] } | { problem: string } {
  const body = json as { Declarations?: Record<string, unknown>; DeclarationsToken?: unknown } | null
  if (typeof body?.DeclarationsToken !== 'string') return { problem: 'DeclarationsToken is missing' }
  if (!body.Declarations || typeof body.Declarations !== 'object') return { problem: 'Declarations is missing' }
  const items: (DeclarationItem & { endpoint: string })[] = []
  for (const category of CATEGORIES) {
    const list = body.Declarations[category] ?? []
    if (!Array.isArray(list)) return { problem: `Declarations.${category} is not an array` }
    for (const item of list as { Identifier?: unknown; ServerToken?: unknown }[]) {
      if (typeof item?.Identifier !== 'string' || typeof item.ServerToken !== 'string') return { problem: `an item of Declarations.${category} lacks Identifier or ServerToken` }
      items.push({ Identifier: item.Identifier, ServerToken: item.ServerToken, endpoint: `declaration/${KIND[category]}/${item.Identifier}` })
    }
  }
  return { declarationsToken: body.DeclarationsToken, items }
}
