/**
 * Web sign-in (`apple-as-web`, PROTOCOL.md section 3) as use cases: start a sign-in for a team and the
 * identifier typed on the device, finish it from the IdP's answer (or the development sign-in), apply
 * the sign-in policy, and mint the access token the device gets back. The identity layer (src/identity)
 * proves who the user is; everything after that is here and shared by every sign-in method.
 */
import type { Config } from '../config/index.js'
import { devSignIn } from '../identity/dev.js'
import { SignInError, type VerifiedSignIn } from '../identity/index.js'
import { SamlServiceProvider, type SamlPost } from '../identity/saml/provider.js'
import { authenticationResultsUrl } from '../protocol/web-signin.js'
import type { ServerUrls } from '../protocol/urls.js'
import type { Client } from '../storage/database.js'
import { findTeam, teamOfUrl } from '../storage/teams.js'
import type { Team } from '../storage/types.js'
import { teamGroupRefusal } from './sign-in-policy.js'
import { mintAccessToken, upsertUser } from './tokens.js'

export interface CompletedSignIn {
  /** The 308 target: `apple-remotemanagement-user-login://authentication-results?access-token=...`. */
  location: string
  method: VerifiedSignIn['method']
  userId: string
  teamId: string
  accessTokenId: string
}

export interface SsoDeps {
  db: Client
  config: Config
  urls: ServerUrls
}

export interface SsoService {
  /** Which sign-in the page offers: the configured SAML IdP, the development sign-in, or none. */
  readonly mode: 'saml' | 'dev' | 'none'
  /** The team of an SSO URL: its enrollment token, or the Default team when there is none. */
  team(enrollmentToken: string | null | undefined): Promise<Team>
  /** Starts a SAML sign-in; returns the IdP URL (HTTP-Redirect binding) to send the browser to. */
  startSaml(input: { enrollmentToken?: string | null; userIdentifier: string | null }): Promise<string>
  completeSaml(post: SamlPost): Promise<CompletedSignIn>
  completeDev(input: { enrollmentToken?: string | null; userIdentifier: string | null; email: string }): Promise<CompletedSignIn>
  /** SP metadata XML for the IdP administrator. */
  samlMetadata(): string
  /** Policy, user, token: the same for SAML and the development sign-in. */
  finish(signIn: VerifiedSignIn): Promise<CompletedSignIn>
}

export function createSsoService(deps: SsoDeps): SsoService {
  const { db, config, urls } = deps
  const saml = config.sso.saml ? new SamlServiceProvider(config.sso.saml, { callback: urls.ssoCallback }, db) : null

  async function team(enrollmentToken: string | null | undefined): Promise<Team> {
    const found = await teamOfUrl(db, enrollmentToken)
    if (!found) throw new SignInError('unknown_team', 'no team has this enrollment token')
    return usesWebSignIn(found)
  }

  /**
   * Web sign-in serves only teams that sign in with it (the team's own method, else AUTH_METHOD); the
   * enroll challenge of an oauth2 team never points here, and the OAuth 2 token endpoint refuses saml
   * teams the same way.
   */
  function usesWebSignIn(t: Team): Team {
    const method = t.authMethod ?? config.authMethod
    if (method !== 'saml') throw new SignInError('not_configured', `team ${t.id} signs in with ${method}, not web sign-in`)
    return t
  }

  async function finish(signIn: VerifiedSignIn): Promise<CompletedSignIn> {
    const { claims, context } = signIn
    const policy = config.sso
    if (policy.requireIdentifierMatch) {
      const email = claims.email?.toLowerCase()
      const typed = context.userIdentifier?.toLowerCase()
      if (!email || email !== typed) {
        throw new SignInError('identifier_mismatch', `signed in as ${claims.email ?? '(no email)'} but the device entered ${context.userIdentifier ?? '(nothing)'} (SSO_REQUIRE_IDENTIFIER_MATCH)`)
      }
    }
    const found = await findTeam(db, context.teamId)
    if (!found) throw new SignInError('unknown_team', `team ${context.teamId} no longer exists`)
    const target = usesWebSignIn(found)
    const groupRefusal = teamGroupRefusal(policy.teamGroups, target.name, claims.groups)
    if (groupRefusal) throw new SignInError('group_not_allowed', `${claims.subject} is ${groupRefusal}`)
    const user = await upsertUser(db, claims)
    // A deactivated user would get a token the enroll endpoint refuses, and the device would ask for the
    // sign-in again, forever: stop here with a page that says why.
    if (!user.active) throw new SignInError('user_inactive', `user ${user.id} is deactivated`)
    const { token, record } = await mintAccessToken(db, {
      userId: user.id,
      teamId: target.id,
      method: signIn.method,
      userIdentifier: context.userIdentifier,
      windowSeconds: config.enrollmentWindowSeconds,
    })
    return { location: authenticationResultsUrl(token), method: signIn.method, userId: user.id, teamId: target.id, accessTokenId: record.id }
  }

  return {
    mode: saml ? 'saml' : config.sso.devSignIn ? 'dev' : 'none',
    team,
    finish,

    async startSaml(input) {
      if (!saml) throw new SignInError('not_configured', 'SAML sign-in was started but no IdP is configured')
      const t = await team(input.enrollmentToken)
      return saml.start({ teamId: t.id, userIdentifier: input.userIdentifier })
    },

    async completeSaml(post) {
      if (!saml) throw new SignInError('not_configured', 'a SAMLResponse was posted but no IdP is configured')
      return finish(await saml.consume(post))
    },

    async completeDev(input) {
      if (!config.sso.devSignIn) throw new SignInError('not_configured', 'the development sign-in is disabled')
      const t = await team(input.enrollmentToken)
      return finish(devSignIn({ teamId: t.id, userIdentifier: input.userIdentifier }, input.email))
    },

    samlMetadata() {
      if (!saml) throw new SignInError('not_configured', 'SP metadata was asked for but no IdP is configured')
      return saml.metadata()
    },
  }
}
