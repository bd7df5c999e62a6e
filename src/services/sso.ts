/**
 * Web sign-in (`apple-as-web`, PROTOCOL.md section 3) as use cases: start a sign-in for a team and the
 * identifier typed on the device, finish it from the IdP's answer (or the development sign-in), apply
 * the sign-in policy, and mint the access token the device gets back. The identity layer (src/identity)
 * proves who the user is; everything after that is here and shared by every sign-in method.
 */
import type { Config } from '../config.js'
import type { PrismaClient, Team } from '../generated/prisma/client.js'
import { devSignIn } from '../identity/dev.js'
import { SignInError, type VerifiedSignIn } from '../identity/index.js'
import { SamlServiceProvider, type SamlPost } from '../identity/saml/provider.js'
import { authenticationResultsUrl } from '../protocol/web-signin.js'
import type { ServerUrls } from '../protocol/urls.js'
import { findTeamByEnrollmentToken } from './teams.js'
import { mintAccessToken, upsertUser } from './tokens.js'

export interface CompletedSignIn {
  /** The 308 target: `apple-remotemanagement-user-login://authentication-results?access-token=...`. */
  location: string
  method: VerifiedSignIn['method']
  userId: string
  teamId: string
  accessTokenId: string
}

export class SsoService {
  /** null when no IdP is configured (development sign-in only). */
  readonly saml: SamlServiceProvider | null

  constructor(
    private readonly prisma: PrismaClient,
    private readonly config: Config,
    urls: ServerUrls,
  ) {
    const settings = config.sso.saml
    this.saml = settings ? new SamlServiceProvider(settings, { callback: urls.ssoCallback }, prisma) : null
  }

  get devSignInEnabled(): boolean {
    return this.config.sso.devSignIn
  }

  /** The team of an SSO URL: its enrollment token, or the Default team when there is none. */
  async team(enrollmentToken: string | null | undefined): Promise<Team> {
    const team = enrollmentToken
      ? await findTeamByEnrollmentToken(this.prisma, enrollmentToken)
      : await this.prisma.team.findFirst({ where: { isDefault: true } })
    if (!team) throw new SignInError('unknown_team', 'no team has this enrollment token')
    return team
  }

  /** Starts a SAML sign-in; returns the IdP URL (HTTP-Redirect binding) to send the browser to. */
  async startSaml(input: { enrollmentToken?: string | null; userIdentifier: string | null }): Promise<string> {
    if (!this.saml) throw new SignInError('not_configured', 'SAML sign-in was started but no IdP is configured')
    const team = await this.team(input.enrollmentToken)
    return this.saml.start({ teamId: team.id, userIdentifier: input.userIdentifier })
  }

  async completeSaml(post: SamlPost): Promise<CompletedSignIn> {
    if (!this.saml) throw new SignInError('not_configured', 'a SAMLResponse was posted but no IdP is configured')
    return this.finish(await this.saml.consume(post))
  }

  async completeDev(input: { enrollmentToken?: string | null; userIdentifier: string | null; email: string }): Promise<CompletedSignIn> {
    if (!this.config.sso.devSignIn) throw new SignInError('not_configured', 'the development sign-in is disabled')
    const team = await this.team(input.enrollmentToken)
    return this.finish(devSignIn({ teamId: team.id, userIdentifier: input.userIdentifier }, input.email))
  }

  /** SP metadata XML for the IdP administrator. */
  samlMetadata(): string {
    if (!this.saml) throw new SignInError('not_configured', 'SP metadata was asked for but no IdP is configured')
    return this.saml.metadata()
  }

  /** Policy, user, token: the same for every sign-in method. */
  async finish(signIn: VerifiedSignIn): Promise<CompletedSignIn> {
    const { claims, context } = signIn
    const policy = this.config.sso
    if (policy.requireIdentifierMatch) {
      const email = claims.email?.toLowerCase()
      const typed = context.userIdentifier?.toLowerCase()
      if (!email || email !== typed) {
        throw new SignInError('identifier_mismatch', `signed in as ${claims.email ?? '(no email)'} but the device entered ${context.userIdentifier ?? '(nothing)'} (SSO_REQUIRE_IDENTIFIER_MATCH)`)
      }
    }
    const team = await this.prisma.team.findUnique({ where: { id: context.teamId } })
    if (!team) throw new SignInError('unknown_team', `team ${context.teamId} no longer exists`)
    const allowed = policy.teamGroups[team.name]
    if (allowed && !(claims.groups ?? []).some((g) => allowed.includes(g))) {
      throw new SignInError('group_not_allowed', `${claims.subject} is in none of the groups allowed for team "${team.name}" (SSO_TEAM_GROUPS)`)
    }
    const user = await upsertUser(this.prisma, claims)
    const { token, record } = await mintAccessToken(this.prisma, {
      userId: user.id,
      teamId: team.id,
      method: signIn.method,
      userIdentifier: context.userIdentifier,
      windowSeconds: this.config.enrollmentWindowSeconds,
    })
    return { location: authenticationResultsUrl(token), method: signIn.method, userId: user.id, teamId: team.id, accessTokenId: record.id }
  }
}
