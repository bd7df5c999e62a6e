/**
 * The device's side of the formats (builders and readers beside the server's parsers): each one
 * round-trips through the server's own parser or builder, and says why when the input is not usable.
 */
import { describe, expect, it } from 'vitest'
import { parseWwwAuthenticate, wwwAuthenticate, type SignInChallenge } from '../../src/protocol/challenge.js'
import { buildCheckin, buildCommandReport, CheckinFormatError, isDeviceEnrollment, parseCheckin, parseCommandReport } from '../../src/protocol/checkin.js'
import { commandPlist, readCommand } from '../../src/protocol/commands.js'
import { emptyDeclarationItemsResponse, emptyTokensResponse, readDeclarationItems, readTokensResponse } from '../../src/protocol/declarations.js'
import { discoveryRequestUrl, readWellKnownResponse, wellKnownResponse } from '../../src/protocol/discovery.js'
import { buildEnrollRequest, parseEnrollRequest } from '../../src/protocol/enroll-request.js'
import { authorizationRequestUrl, readAuthorizationRedirect, tokenRequestForm } from '../../src/protocol/oauth2.js'
import { authenticationResultsUrl, readAuthenticationResults } from '../../src/protocol/web-signin.js'
import { parsePlistDict } from '../../src/protocol/plist.js'
import { recordedEnrollBody } from '../../src/device/recorded-enroll-body.js'
import { fixtureBase64 } from '../helpers/fixtures.js'

const OAUTH2: Extract<SignInChallenge, { method: 'apple-oauth2' }> = {
  method: 'apple-oauth2',
  authorizationUrl: 'https://idp.example.com/authorize?tenant=a',
  tokenUrl: 'https://mdm.example.com/api/v1/mdm/oauth2/token/abc',
  redirectUrl: 'apple-remotemanagement-user-login:/oauth2/redirection',
  clientId: 'byod-mdm',
  scope: 'openid email profile',
}

describe('the recorded enroll body the simulator ships', () => {
  it('is byte for byte the fixture whose provenance test/fixtures/README.md records', () => {
    expect(recordedEnrollBody().equals(fixtureBase64('enroll-body.iphone12-1.ios15.b64'))).toBe(true)
  })
})

describe('WWW-Authenticate, read as the device reads it', () => {
  it('reads back what the server writes, for both methods, escapes included', () => {
    const web: SignInChallenge = { method: 'apple-as-web', url: 'https://mdm.example.com/mdm/sso/a"b\\c' }
    expect(parseWwwAuthenticate(wwwAuthenticate(web))).toEqual(web)
    expect(parseWwwAuthenticate(wwwAuthenticate(OAUTH2))).toEqual(OAUTH2)
  })

  it('accepts space-separated parameters and tokens (a recorded server sent them; devices followed)', () => {
    expect(parseWwwAuthenticate('Bearer method="apple-as-web" url="https://x.example/sso"')).toEqual({ method: 'apple-as-web', url: 'https://x.example/sso' })
    expect(parseWwwAuthenticate('Bearer method=apple-as-web, url="https://x.example/sso"')).toEqual({ method: 'apple-as-web', url: 'https://x.example/sso' })
  })

  it('says why a device would cancel', () => {
    expect(parseWwwAuthenticate(undefined)).toEqual({ problem: 'the 401 has no WWW-Authenticate header' })
    expect(parseWwwAuthenticate('Basic realm="x"')).toMatchObject({ problem: expect.stringMatching(/scheme is not "Bearer"/) })
    expect(parseWwwAuthenticate('bearer method="apple-as-web", url="https://x"')).toMatchObject({ problem: expect.stringMatching(/scheme/) })
    expect(parseWwwAuthenticate('Bearer method="apple-magic"')).toEqual({ problem: 'unknown method "apple-magic"' })
    expect(parseWwwAuthenticate('Bearer method="apple-as-web"')).toEqual({ problem: 'method="apple-as-web" without url' })
    expect(parseWwwAuthenticate('Bearer method="apple-oauth2", token-url="https://t"')).toMatchObject({ problem: expect.stringMatching(/without authorization-url, redirect-url, client-id/) })
    expect(parseWwwAuthenticate('Bearer method="a", method="b"')).toEqual({ problem: 'the parameter method appears twice' })
  })
})

describe('check-in messages and command reports', () => {
  it('build what the server parses, and refuse what it would refuse', () => {
    const body = buildCheckin({ MessageType: 'TokenUpdate', Topic: 'com.apple.mgmt.External.x', EnrollmentID: 'E1', Token: new Uint8Array([1, 2, 3]), PushMagic: 'M', AwaitingConfiguration: false, UserLongName: undefined })
    expect(parseCheckin(body)).toEqual({ MessageType: 'TokenUpdate', Topic: 'com.apple.mgmt.External.x', EnrollmentID: 'E1', Token: new Uint8Array([1, 2, 3]), PushMagic: 'M', AwaitingConfiguration: false })
    expect(() => buildCheckin({ MessageType: 'Authenticate', EnrollmentID: 'E1' } as never)).toThrow(CheckinFormatError)
    const report = buildCommandReport({ EnrollmentID: 'E1', Status: 'Acknowledged', CommandUUID: 'C1', QueryResponses: { OSVersion: '18.2' } })
    expect(parseCommandReport(report).raw).toEqual({ EnrollmentID: 'E1', Status: 'Acknowledged', CommandUUID: 'C1', QueryResponses: { OSVersion: '18.2' } })
    expect(() => buildCommandReport({ EnrollmentID: 'E1', Status: 'Acknowledged' })).toThrow(/CommandUUID is required/)
  })

  it('device enrollment: UDID (and a Mac\'s UserID) where user enrollment has EnrollmentID, as the server reads them', () => {
    const body = buildCheckin({ MessageType: 'Authenticate', Topic: 'com.apple.mgmt.External.x', UDID: '00008110-0000000000000001', SerialNumber: 'F2LXK0ABCDEF' })
    expect(parsePlistDict(body)).not.toHaveProperty('EnrollmentID')
    const parsed = parseCheckin(body)
    expect(parsed).toMatchObject({ EnrollmentID: '00008110-0000000000000001', SerialNumber: 'F2LXK0ABCDEF' })
    expect(isDeviceEnrollment(parsed)).toBe(true)
    const user = parseCheckin(buildCheckin({ MessageType: 'TokenUpdate', Topic: 'com.apple.mgmt.External.x', UDID: 'U1', UserID: 'USER-1', Token: new Uint8Array([1]), PushMagic: 'M' }))
    expect(user).toMatchObject({ EnrollmentID: 'U1', EnrollmentUserID: 'USER-1' })
    const report = parseCommandReport(buildCommandReport({ UDID: 'U1', Status: 'Idle' }))
    expect(report.report.EnrollmentID).toBe('U1')
    expect(isDeviceEnrollment(report.report)).toBe(true)
    // Neither name: refused before it is sent, as the server would refuse it.
    expect(() => buildCheckin({ MessageType: 'CheckOut', Topic: 'com.apple.mgmt.External.x' } as never)).toThrow(CheckinFormatError)
  })

  it('reads the command the server answers with, or says what is missing', () => {
    expect(readCommand(commandPlist('U1', { RequestType: 'ProfileList' }))).toEqual({ commandUuid: 'U1', command: { RequestType: 'ProfileList' } })
    expect(readCommand({ Command: { RequestType: 'ProfileList' } })).toEqual({ problem: 'the answer has no CommandUUID' })
    expect(readCommand({ CommandUUID: 'U2', Command: {} })).toEqual({ problem: 'the Command has no RequestType', commandUuid: 'U2' })
  })
})

describe('enrollment requests', () => {
  it('discovery: the request the device sends and the answer it reads', () => {
    expect(discoveryRequestUrl('https://example.com/ignored/path', 'Alice@Example.com', 'iPhone')).toBe('https://example.com/.well-known/com.apple.remotemanagement?user-identifier=Alice%40Example.com&model-family=iPhone')
    expect(readWellKnownResponse(wellKnownResponse('https://mdm.example.com/api/mdm/apple/enroll/t'))).toEqual({ version: 'mdm-byod', baseUrl: 'https://mdm.example.com/api/mdm/apple/enroll/t' })
    expect(readWellKnownResponse({ Servers: [] })).toEqual({ problem: 'no Servers array' })
    expect(readWellKnownResponse({ Servers: [{ Version: 'mdm-byod', BaseURL: '/relative' }] })).toMatchObject({ problem: expect.stringMatching(/not an absolute URL/) })
  })

  it('the enroll plist round-trips through the server parser', () => {
    expect(parseEnrollRequest(buildEnrollRequest({ product: 'RealityDevice14,1', version: '22N842', language: 'en-US' }))).toEqual({ product: 'RealityDevice14,1', version: '22N842', language: 'en-US' })
  })

  it('web sign-in: the token from the callback URL', () => {
    expect(readAuthenticationResults(authenticationResultsUrl('tok+/='))).toEqual({ accessToken: 'tok+/=' })
    expect(readAuthenticationResults('https://evil.example/?access-token=x')).toMatchObject({ problem: expect.stringMatching(/scheme/) })
    expect(readAuthenticationResults('apple-remotemanagement-user-login://authentication-results')).toEqual({ problem: 'no access-token in the URL' })
  })

  it('OAuth 2: Apple\'s authorization request, the redirect with state checked, the token form', () => {
    const url = new URL(authorizationRequestUrl(OAUTH2, { state: 's1', loginHint: 'alice@example.com' }))
    expect(Object.fromEntries(url.searchParams)).toEqual({ tenant: 'a', response_type: 'code', client_id: 'byod-mdm', redirect_uri: OAUTH2.redirectUrl, scope: 'openid email profile', state: 's1', login_hint: 'alice@example.com' })
    expect(url.searchParams.has('code_challenge')).toBe(false)
    expect(readAuthorizationRedirect(`${OAUTH2.redirectUrl}?code=c1&state=s1`, OAUTH2, 's1')).toEqual({ code: 'c1' })
    expect(readAuthorizationRedirect(`${OAUTH2.redirectUrl}?code=c1&state=other`, OAUTH2, 's1')).toMatchObject({ problem: expect.stringMatching(/state does not match/) })
    expect(readAuthorizationRedirect(`${OAUTH2.redirectUrl}?error=access_denied&state=s1`, OAUTH2, 's1')).toEqual({ problem: 'the IdP answered access_denied' })
    expect(Object.fromEntries(new URLSearchParams(tokenRequestForm(OAUTH2, 'c1')))).toEqual({ grant_type: 'authorization_code', code: 'c1', redirect_uri: OAUTH2.redirectUrl, client_id: 'byod-mdm' })
  })
})

describe('declarative management, read as the device reads it', () => {
  it('reads the server\'s tokens and items, with the endpoint of each declaration', () => {
    expect(readTokensResponse(emptyTokensResponse(new Date('2025-01-01T00:00:00Z')))).toMatchObject({ timestamp: '2025-01-01T00:00:00Z' })
    expect(readDeclarationItems(emptyDeclarationItemsResponse())).toMatchObject({ items: [] })
    const items = readDeclarationItems({ DeclarationsToken: 't', Declarations: { Activations: [{ Identifier: 'a', ServerToken: '1' }], Configurations: [{ Identifier: 'c', ServerToken: '2' }] } })
    expect(items).toEqual({ declarationsToken: 't', items: [{ Identifier: 'a', ServerToken: '1', endpoint: 'declaration/activation/a' }, { Identifier: 'c', ServerToken: '2', endpoint: 'declaration/configuration/c' }] })
    expect(readDeclarationItems({ DeclarationsToken: 't', Declarations: { Assets: [{ Identifier: 'x' }] } })).toMatchObject({ problem: expect.stringMatching(/lacks Identifier or ServerToken/) })
  })
})
