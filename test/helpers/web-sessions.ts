/**
 * Web authentication sessions for the simulator's sign-in (src/device/sign-in.ts), driven by the test
 * peers instead of a person: what the device's web view and the user do between the URL the device opens
 * and the custom-scheme URL it waits for.
 */
import type { App } from '../../src/app.js'
import type { WebAuthenticationSession } from '../../src/device/sign-in.js'
import type { Transport } from '../../src/device/transport.js'
import { browseToRedirect } from './oauth2-device.js'
import type { ResponseOptions, TestIdp } from './saml-idp.js'
import { spFromMetadata } from './sso.js'

/**
 * `apple-as-web` with SAML: the SSO page (through the device's transport), what its script does (POST
 * the start endpoint for the IdP URL), the in-process IdP answering the AuthnRequest as `nameId`, and the
 * browser posting the Response to the assertion consumer, whose 308 Location ends the session.
 */
export function samlSession(app: App, transport: Transport, idp: TestIdp, options: ResponseOptions = {}): WebAuthenticationSession {
  return async (request) => {
    const page = await transport.request('GET', request.url, { headers: { accept: 'text/html' } })
    if (page.status !== 200) throw new Error(`the SSO page answered ${page.status}`)
    const html = page.body.toString('utf8')
    const data = (name: string) => new RegExp(`data-${name}="([^"]*)"`).exec(html)?.[1] ?? ''
    const start = await transport.request('POST', data('start-url'), {
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ enrollmentToken: data('enrollment-token') || null, userIdentifier: data('user-identifier') || null }),
    })
    if (start.status !== 200) throw new Error(`the start endpoint answered ${start.status}: ${start.body.toString()}`)
    const { url } = JSON.parse(start.body.toString('utf8')) as { url: string }
    const sp = await spFromMetadata(app)
    const authn = await idp.readRequest(url, sp.metadata)
    const SAMLResponse = await idp.respond(authn, sp, { nameId: request.userIdentifier, ...options })
    const callback = await transport.request('POST', sp.acsUrl, {
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ SAMLResponse, RelayState: authn.relayState }).toString(),
    })
    if (callback.status !== 308 || !callback.headers.location) throw new Error(`the assertion consumer answered ${callback.status}: ${callback.body.toString()}`)
    return callback.headers.location
  }
}

/** `apple-oauth2` at oidc-provider: its login form with `login`/`password`, up to the redirect to redirect-url. */
export function oidcSession(user: { login: string; password: string }): WebAuthenticationSession {
  return async (request) => {
    const start = new URL(request.url)
    const { redirect } = await browseToRedirect(start, start.searchParams.get('redirect_uri')!, user)
    return redirect
  }
}
