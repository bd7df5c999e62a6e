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

/**
 * Reads the challenge as Apple's client does (the device simulator's side of `wwwAuthenticate`): the
 * scheme must be exactly `Bearer`; parameters are tokens or quoted strings, separated by commas (the
 * standard form) or white space alone (a recorded server sent that, and devices accepted it). Returns
 * why not when the header is not a challenge a device could follow (a device cancels enrollment then).
 */
export function parseWwwAuthenticate(header: string | undefined): SignInChallenge | { problem: string } {
  if (header === undefined || header === '') return { problem: 'the 401 has no WWW-Authenticate header' }
  if (!header.startsWith('Bearer ')) return { problem: `the scheme is not "Bearer": ${JSON.stringify(header.slice(0, 40))}` }
  const params = new Map<string, string>()
  const re = /[\s,]*([A-Za-z0-9!#$%&'*+.^_`|~-]+)=(?:"((?:[^"\\]|\\.)*)"|([^\s,"]+))/y
  let pos = 'Bearer '.length
  while (pos < header.length) {
    if (/^[\s,]*$/.test(header.slice(pos))) break
    re.lastIndex = pos
    const m = re.exec(header)
    if (!m) return { problem: `unreadable parameters from ${JSON.stringify(header.slice(pos, pos + 40))}` }
    const name = m[1]!.toLowerCase()
    if (params.has(name)) return { problem: `the parameter ${name} appears twice` }
    params.set(name, m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3]!)
    pos = re.lastIndex
  }
  const method = params.get('method')
  if (method === 'apple-as-web') {
    const url = params.get('url')
    return url ? { method, url } : { problem: 'method="apple-as-web" without url' }
  }
  if (method === 'apple-oauth2') {
    const names = ['authorization-url', 'token-url', 'redirect-url', 'client-id'] as const
    const missing = names.filter((n) => !params.get(n))
    if (missing.length) return { problem: `method="apple-oauth2" without ${missing.join(', ')}` }
    return {
      method,
      authorizationUrl: params.get('authorization-url')!,
      tokenUrl: params.get('token-url')!,
      redirectUrl: params.get('redirect-url')!,
      clientId: params.get('client-id')!,
      scope: params.get('scope') ?? '',
    }
  }
  return { problem: method ? `unknown method ${JSON.stringify(method)}` : 'no method parameter' }
}
