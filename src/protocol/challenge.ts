/**
 * The `WWW-Authenticate` challenge of the enroll endpoint's 401 (PROTOCOL.md section 2): scheme `Bearer`
 * with quoted, comma-separated auth-params (RFC 9110 section 11.6.1). Apple's client matches the scheme
 * exactly and reads the parameters by name.
 * https://developer.apple.com/documentation/devicemanagement/user_enrollment/onboarding_users_with_account_sign-in
 */

/**
 * How the device signs the user in. `apple-as-web`: it appends `user-identifier=` to `url` and opens it in
 * a web authentication session (PROTOCOL.md section 3). `apple-oauth2`: it runs the authorization code
 * flow as a public client against `authorization-url` and redeems the code at `token-url`, which is this
 * server (PROTOCOL.md section 4).
 */
export type SignInChallenge =
  | { method: 'apple-as-web'; url: string }
  | { method: 'apple-oauth2'; authorizationUrl: string; tokenUrl: string; redirectUrl: string; clientId: string; scope: string }

export function wwwAuthenticate(challenge: SignInChallenge): string {
  switch (challenge.method) {
    case 'apple-as-web':
      return bearer([
        ['method', challenge.method],
        ['url', challenge.url],
      ])
    case 'apple-oauth2':
      return bearer([
        ['method', challenge.method],
        ['authorization-url', challenge.authorizationUrl],
        ['token-url', challenge.tokenUrl],
        ['redirect-url', challenge.redirectUrl],
        ['client-id', challenge.clientId],
        ['scope', challenge.scope],
      ])
  }
}

function bearer(params: [name: string, value: string][]): string {
  return `Bearer ${params.map(([name, value]) => `${name}=${quotedString(value)}`).join(', ')}`
}

/** RFC 9110 quoted-string; control characters cannot be represented and would split the header. */
export function quotedString(value: string): string {
  if (/[\u0000-\u001f\u007f]/.test(value)) throw new Error('a WWW-Authenticate parameter cannot contain control characters')
  return `"${value.replace(/["\\]/g, (c) => `\\${c}`)}"`
}
