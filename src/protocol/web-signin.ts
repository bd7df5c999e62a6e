/**
 * The end of web sign-in (`apple-as-web`, PROTOCOL.md section 3): the device's
 * ASWebAuthenticationSession watches for its callback scheme and reads the token from this URL.
 * https://developer.apple.com/documentation/devicemanagement/implementing-the-simple-authentication-account-driven-enrollment-flow
 */
export const WEB_SIGNIN_CALLBACK_SCHEME = 'apple-remotemanagement-user-login'

/** `apple-remotemanagement-user-login://authentication-results?access-token=<token>`, sent with a 308. */
export function authenticationResultsUrl(accessToken: string): string {
  return `${WEB_SIGNIN_CALLBACK_SCHEME}://authentication-results?access-token=${encodeURIComponent(accessToken)}`
}

/** Longest user-identifier accepted from the device (an email address or Managed Apple Account). */
export const MAX_USER_IDENTIFIER_LENGTH = 320

/** The user-identifier the device appended to the SSO URL, or null when absent or unusable. */
export function normalizeUserIdentifier(value: unknown): string | null {
  if (typeof value !== 'string') return null
  const v = value.trim()
  // eslint-disable-next-line no-control-regex
  if (!v || v.length > MAX_USER_IDENTIFIER_LENGTH || /[\u0000-\u001f\u007f]/.test(v)) return null
  return v
}

/**
 * The access token in the URL the web authentication session ended on (the device's side of
 * `authenticationResultsUrl`); why not when it is not that URL. Any host/path under the callback scheme
 * ends the session; the token is the `access-token` query item.
 */
export function readAuthenticationResults(location: string): { accessToken: string } | { problem: string } {
  let url: URL
  try {
    url = new URL(location.trim())
  } catch {
    return { problem: 'not a URL' }
  }
  if (url.protocol !== `${WEB_SIGNIN_CALLBACK_SCHEME}:`) return { problem: `the scheme is ${url.protocol} instead of ${WEB_SIGNIN_CALLBACK_SCHEME}:` }
  const token = url.searchParams.get('access-token')
  return token ? { accessToken: token } : { problem: 'no access-token in the URL' }
}
