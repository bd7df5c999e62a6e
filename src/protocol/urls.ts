/**
 * The public URLs of this server (PROTOCOL.md section 0), built in one place so that discovery, the
 * 401 challenge, the profile and the start-up banner always agree. `base` is SERVER_URL without a
 * trailing slash; team tokens are URL-safe (base64url) and go in the path because Apple's client drops
 * query strings from challenge URLs.
 */
export interface ServerUrls {
  discovery: string
  enroll(teamToken: string): string
  ssoPage(teamToken: string): string
  ssoStart: string
  ssoCallback: string
  ssoMetadata: string
  /** The development sign-in form posts here (only when no IdP is configured). */
  ssoDevSignIn: string
  oauth2Token(teamToken: string): string
  /** Enrollment SSO documents (X-Apple-MDM-ESSO, X-Apple-MDM-ESSO-Developer) and the profile a legacy configuration names. */
  esso(teamToken: string): string
  essoDeveloper(teamToken: string): string
  essoProfile(teamToken: string, key: string): string
  scep: string
  mdm: string
}

export function serverUrls(base: string): ServerUrls {
  const seg = (token: string) => encodeURIComponent(token)
  return {
    discovery: `${base}/.well-known/com.apple.remotemanagement`,
    enroll: (t) => `${base}/api/mdm/apple/enroll/${seg(t)}`,
    ssoPage: (t) => `${base}/mdm/sso/${seg(t)}`,
    ssoStart: `${base}/api/v1/mdm/sso`,
    ssoCallback: `${base}/api/v1/mdm/sso/callback`,
    ssoMetadata: `${base}/api/v1/mdm/sso/metadata`,
    ssoDevSignIn: `${base}/api/v1/mdm/sso/dev`,
    oauth2Token: (t) => `${base}/api/v1/mdm/oauth2/token/${seg(t)}`,
    esso: (t) => `${base}/api/mdm/apple/esso/${seg(t)}`,
    essoDeveloper: (t) => `${base}/api/mdm/apple/esso/developer/${seg(t)}`,
    essoProfile: (t, key) => `${base}/api/mdm/apple/esso/${seg(t)}/profiles/${seg(key)}`,
    scep: `${base}/mdm/apple/scep`,
    mdm: `${base}/mdm/apple/mdm`,
  }
}

/** Only this machine can reach a loopback host (`URL.hostname`: IPv6 in brackets). */
export function isLoopbackHost(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127(\.\d{1,3}){3}$/.test(hostname)
}
