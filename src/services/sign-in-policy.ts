/**
 * The sign-in policy every method applies before a token is minted: web sign-in (SAML, development) and
 * OAuth 2 (code redemption and every refresh). Pure: returns the reason to refuse, or null.
 */
import type { SsoConfig } from '../config/index.js'

/**
 * SSO_TEAM_GROUPS: a team listed there admits only users in at least one of its groups; teams not listed
 * admit every signed-in user.
 */
export function teamGroupRefusal(teamGroups: SsoConfig['teamGroups'], teamName: string, groups: readonly string[] | undefined): string | null {
  const allowed = teamGroups[teamName]
  if (!allowed) return null
  if ((groups ?? []).some((g) => allowed.includes(g))) return null
  return `in none of the groups allowed for team "${teamName}" (SSO_TEAM_GROUPS)`
}
