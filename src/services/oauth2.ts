/**
 * The token endpoint of the `apple-oauth2` sign-in (PROTOCOL.md section 4): the device, a public client,
 * posts the authorization code it got from the IdP, or one of our refresh tokens, and gets our own
 * access token (the same kind web sign-in hands out) and a rotating refresh token of ours. The IdP's
 * tokens and our client secret stay on this server.
 */
import type { Config } from '../config/index.js'
import { AppError, isDatabaseUnavailable } from '../errors.js'
import { OidcError, type OidcClient, type OidcRefresh } from '../identity/oidc.js'
import { SecretBox } from '../pki/secretbox.js'
import type { Client } from '../storage/database.js'
import { teamOfUrl } from '../storage/teams.js'
import type { Team } from '../storage/types.js'
import { findUser } from '../storage/users.js'
import {
  consumeRefreshToken,
  continueGrant,
  createGrant,
  findRefreshToken,
  openIdpRefreshToken,
  releaseRefreshToken,
  revokeGrant,
  type IssuedTokens,
} from './oauth2-grants.js'
import { teamGroupRefusal } from './sign-in-policy.js'
import { userData } from './tokens.js'

/** RFC 6749 section 5.2 error codes, plus section 4.1.2.1's two server-side ones for IdP trouble. */
export type OAuth2ErrorCode =
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_grant'
  | 'unauthorized_client'
  | 'unsupported_grant_type'
  | 'server_error'
  | 'temporarily_unavailable'

/**
 * An error the token endpoint answers as `{"error", "error_description"}`. The description is shown to
 * the client; `logReason` (never a secret) goes to the log only.
 */
export class OAuth2Error extends AppError {
  constructor(
    status: number,
    readonly error: OAuth2ErrorCode,
    readonly description: string,
    readonly logReason: string = description,
    options: { cause?: unknown; alarm?: boolean } = {},
  ) {
    super(status, error, logReason, { cause: options.cause, expose: true })
    this.alarm = options.alarm ?? false
  }

  /** A sign of a stolen token rather than a confused client: worth a warning in the log. */
  readonly alarm: boolean
}

const invalidRequest = (description: string) => new OAuth2Error(400, 'invalid_request', description)
const invalidGrant = (logReason: string, options: { cause?: unknown; alarm?: boolean } = {}) =>
  new OAuth2Error(400, 'invalid_grant', 'The grant is invalid, expired or revoked', logReason, options)

/** Longest code / refresh token we pass on; real ones are far shorter (Entra's codes are ~1-2 KB). */
const MAX_CODE_LENGTH = 4096

export interface TokenRequest {
  /** The path's team token (the `token-url` of the team's challenge). */
  /** The path's team token; undefined for the Default team's token URL. */
  teamToken?: string
  /** The form parameters, each present at most once. */
  params: Record<string, string>
  now?: Date
}

export interface TokenOutcome extends IssuedTokens {
  grantType: 'authorization_code' | 'refresh_token'
  userId: string
  notes: string[]
}

export interface OAuth2Service {
  token(request: TokenRequest): Promise<TokenOutcome>
}

export interface OAuth2Deps {
  db: Client
  config: Config
  oidc: OidcClient | null
}

export function createOAuth2Service(deps: OAuth2Deps): OAuth2Service {
  const { db, config, oidc } = deps
  const box = new SecretBox(config.serverSecret)
  const lifetimes = { accessTokenTtlSeconds: config.oauth2.accessTokenTtlSeconds, refreshTokenTtlSeconds: config.oauth2.refreshTokenTtlSeconds }

  /** The IdP's trouble in the token endpoint's words; nothing has been minted when this is thrown. */
  function idpFailure(err: unknown, grantWord: string): OAuth2Error {
    if (!(err instanceof OidcError)) throw err
    switch (err.kind) {
      case 'unavailable':
        return new OAuth2Error(503, 'temporarily_unavailable', 'The identity provider cannot be reached, try again shortly', err.message, { cause: err })
      case 'misconfigured':
        return new OAuth2Error(502, 'server_error', 'The identity provider refused this server', err.message, { cause: err })
      case 'refused':
      case 'invalid_response':
        return invalidGrant(`${grantWord}: ${err.message}`, { cause: err })
    }
  }

  async function authorizationCode(team: Team, params: Record<string, string>, now: Date): Promise<TokenOutcome> {
    const { code, redirect_uri: redirectUri } = params
    if (!code) throw invalidRequest('code is required')
    if (code.length > MAX_CODE_LENGTH) throw invalidRequest('code is too long')
    if (!redirectUri) throw invalidRequest('redirect_uri is required')
    const method = team.authMethod ?? config.authMethod
    if (!oidc || method !== 'oauth2') {
      throw new OAuth2Error(400, 'unauthorized_client', 'This enrollment does not sign in with OAuth 2', `team ${team.id} signs in with ${method}${oidc ? '' : ' and no OIDC provider is configured'}`)
    }
    // RFC 6749 section 4.1.3: it must be the redirect_uri of the authorization request, which for Apple's
    // client is the redirect-url of our challenge. Checked here so a wrong one never reaches the IdP.
    if (redirectUri !== oidc.settings.redirectUrl) throw invalidGrant('redirect_uri is not the one in the challenge')

    let signIn
    try {
      signIn = await oidc.redeemCode(code)
    } catch (err) {
      throw idpFailure(err, 'authorization code')
    }
    const { claims } = signIn
    const groupRefusal = teamGroupRefusal(config.sso.teamGroups, team.name, claims.groups)
    if (groupRefusal) throw invalidGrant(`${claims.subject} is ${groupRefusal}`)
    const issued = await createGrant(db, box, {
      user: userData(claims),
      teamId: team.id,
      idpRefreshToken: signIn.idpRefreshToken,
      enrollmentWindowSeconds: config.enrollmentWindowSeconds,
      lifetimes,
      scope: oidc.settings.scope,
      now,
    })
    if (!issued.tokens) throw invalidGrant(`user ${issued.userId} is deactivated`)
    return { ...issued.tokens, grantType: 'authorization_code', userId: issued.userId, notes: signIn.notes }
  }

  async function refreshToken(team: Team, params: Record<string, string>, now: Date): Promise<TokenOutcome> {
    const presented = params.refresh_token
    if (!presented) throw invalidRequest('refresh_token is required')
    const found = await findRefreshToken(db, presented)
    if (!found) throw invalidGrant('unknown refresh token')
    const { grant } = found
    if (grant.teamId !== team.id) throw invalidGrant(`refresh token of grant ${grant.id} presented at another team's token URL`)
    if (grant.revokedAt) throw invalidGrant(`grant ${grant.id} is revoked (${grant.revokedReason ?? 'no reason'})`)
    if (found.usedAt) {
      await revokeGrant(db, grant.id, 'refresh_token_reuse', now)
      throw invalidGrant(`refresh token reused: grant ${grant.id} revoked`, { alarm: true })
    }
    if (found.expiresAt.getTime() <= now.getTime()) throw invalidGrant(`refresh token of grant ${grant.id} expired`)
    const user = await findUser(db, grant.userId)
    if (!user?.active) throw invalidGrant(`user ${grant.userId} is deactivated`)

    if (!(await consumeRefreshToken(db, found.id, now))) {
      // Another request exchanged it between our read and now: the same token in two hands.
      await revokeGrant(db, grant.id, 'refresh_token_reuse', now)
      throw invalidGrant(`refresh token reused concurrently: grant ${grant.id} revoked`, { alarm: true })
    }
    try {
      const idpRefreshToken = openIdpRefreshToken(box, grant)
      let refreshed: OidcRefresh | undefined
      if (idpRefreshToken) {
        if (!oidc) throw invalidGrant(`grant ${grant.id} holds an IdP refresh token but no OIDC provider is configured`)
        try {
          refreshed = await oidc.refresh(idpRefreshToken, user.subject)
        } catch (err) {
          const failure = idpFailure(err, 'IdP refresh')
          if (failure.error === 'invalid_grant') await revokeGrant(db, grant.id, 'idp_refused', now)
          throw failure
        }
      }
      // Group membership is checked again on every refresh: with the IdP's fresh claims when it sent
      // some, else with what was stored at the last sign-in. Leaving the group ends the grant.
      const groupRefusal = teamGroupRefusal(config.sso.teamGroups, team.name, refreshed?.claims?.groups ?? user.groups)
      if (groupRefusal) {
        await revokeGrant(db, grant.id, 'group_not_allowed', now)
        throw invalidGrant(`${user.subject} is ${groupRefusal}: grant ${grant.id} revoked`)
      }
      const issued = await continueGrant(db, box, {
        grantId: grant.id,
        userId: user.id,
        teamId: team.id,
        refreshedFromId: found.accessTokenId,
        idpRefreshToken: refreshed?.idpRefreshToken,
        user: refreshed?.claims ? userData(refreshed.claims) : undefined,
        lifetimes,
        scope: oidc?.settings.scope,
        now,
      })
      if (!issued) throw invalidGrant(`grant ${grant.id} was revoked during the refresh`)
      return { ...issued, grantType: 'refresh_token', userId: user.id, notes: [] }
    } catch (err) {
      // The device may retry the same refresh token when we, the IdP or the database could not answer.
      const retryable = (err instanceof OAuth2Error && err.status >= 500) || isDatabaseUnavailable(err)
      if (retryable) await releaseRefreshToken(db, found.id, now).catch(() => {})
      throw err
    }
  }

  return {
    async token(request) {
      const now = request.now ?? new Date()
      const { params } = request
      const grantType = params.grant_type
      if (!grantType) throw invalidRequest('grant_type is required')
      if (grantType !== 'authorization_code' && grantType !== 'refresh_token') {
        throw new OAuth2Error(400, 'unsupported_grant_type', 'Only authorization_code and refresh_token are supported')
      }
      // A public client identifies itself with client_id only (RFC 6749 section 3.2.1), and must when it
      // redeems a code (section 4.1.3). A refresh need not carry it (section 6), and Apple never shows the
      // device's refresh request: refusing one only for a missing client_id would send the user through an
      // interactive sign-in for nothing. When present it must match. invalid_client is a 400 here, not the
      // 401 of section 5.2: a device should never see a 401 from token-url (PROTOCOL.md section 4).
      if (!params.client_id && grantType === 'authorization_code') throw invalidRequest('client_id is required')
      if (params.client_id !== undefined && (!oidc || params.client_id !== oidc.settings.clientId)) {
        throw new OAuth2Error(400, 'invalid_client', 'Unknown client', 'client_id is not OIDC_CLIENT_ID')
      }
      const team = await teamOfUrl(db, request.teamToken)
      if (!team) throw invalidRequest('This token URL is not valid')
      return grantType === 'authorization_code' ? authorizationCode(team, params, now) : refreshToken(team, params, now)
    },
  }
}
