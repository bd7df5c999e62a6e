/**
 * The development sign-in: no identity provider, the user types any email address. Only offered when
 * no IdP is configured and SERVER_URL is a loopback address or ALLOW_DEV_SIGNIN=true (config.ts), so a
 * newcomer can complete an enrollment right after `npm start`.
 */
import { SignInError, type SignInContext, type VerifiedSignIn } from './index.js'

export const DEV_ISSUER = 'dev'

// No white space or control characters (Postgres text cannot even hold U+0000).
// eslint-disable-next-line no-control-regex
const EMAIL = /^[^\s\u0000-\u001f\u007f@<>"]+@[^\s\u0000-\u001f\u007f@<>"]+$/

export function devSignIn(context: SignInContext, email: string): VerifiedSignIn {
  const value = email.trim()
  if (value.length > 254 || !EMAIL.test(value)) throw new SignInError('missing_identity', 'the development sign-in needs an email address')
  return {
    method: 'dev',
    claims: { issuer: DEV_ISSUER, subject: value.toLowerCase(), email: value, displayName: null, groups: [] },
    context,
  }
}
