/** Shared by the OAuth 2 tests. */
import type { App } from '../../src/app.js'

export const TOPIC = 'com.apple.mgmt.External.5b1a8c0e-2f4e-4d1b-9a57-0c3d2e1f4a6b'

/** The environment of a server whose users sign in with OAuth 2 at `idp` (an http issuer on loopback). */
export function oauth2Env(idp: { issuer: string; clientId: string; clientSecret: string }, extra: Record<string, string> = {}): Record<string, string> {
  return {
    APNS_TOPIC: TOPIC,
    AUTH_METHOD: 'oauth2',
    OIDC_ISSUER: idp.issuer,
    OIDC_CLIENT_ID: idp.clientId,
    OIDC_CLIENT_SECRET: idp.clientSecret,
    OIDC_ALLOW_INSECURE_HTTP: 'true',
    OIDC_HTTP_TIMEOUT: '3s',
    ...extra,
  }
}

/** Rows the token endpoint may write; "nothing minted" means these do not change. */
export async function tokenRows(app: App) {
  const prisma = app.db.prisma
  return {
    users: await prisma.user.count(),
    accessTokens: await prisma.accessToken.count(),
    grants: await prisma.oAuth2Grant.count(),
    refreshTokens: await prisma.oAuth2RefreshToken.count(),
  }
}
