import { describe, expect, it } from 'vitest'
import { EMPTY_DECLARATIONS_TOKEN, emptyDeclarationItemsResponse, emptyTokensResponse, parseDeclarativeEndpoint } from '../../src/protocol/declarations.js'

describe('declarative management endpoints', () => {
  it('reads the endpoints Apple documents and nothing else', () => {
    expect(parseDeclarativeEndpoint('tokens')).toEqual({ kind: 'tokens' })
    expect(parseDeclarativeEndpoint('declaration-items')).toEqual({ kind: 'declaration-items' })
    expect(parseDeclarativeEndpoint('status')).toEqual({ kind: 'status' })
    expect(parseDeclarativeEndpoint('declaration/configuration/com.example.a')).toEqual({ kind: 'declaration', type: 'configuration', identifier: 'com.example.a' })
    for (const e of ['Tokens', 'tokens/', 'declaration/configuration/', 'declaration/profile/x', 'declaration/asset/a/b', '']) expect(parseDeclarativeEndpoint(e), e).toEqual({ kind: 'unknown' })
  })

  it('serves the empty set with one stable token and a whole-second UTC timestamp', () => {
    expect(EMPTY_DECLARATIONS_TOKEN).toMatch(/^[0-9a-f]{64}$/)
    expect(emptyTokensResponse(new Date('2026-11-24T10:11:12.345Z'))).toEqual({ SyncTokens: { DeclarationsToken: EMPTY_DECLARATIONS_TOKEN, Timestamp: '2026-11-24T10:11:12Z' } })
    expect(emptyDeclarationItemsResponse().DeclarationsToken).toBe(EMPTY_DECLARATIONS_TOKEN)
  })
})
