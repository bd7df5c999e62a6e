/**
 * A real SAML identity provider in-process: samlify with its own RSA key and certificate. It reads the
 * AuthnRequests our server sends (HTTP-Redirect binding) and builds signed Responses for them; tests
 * can bend any field (audience, times, Recipient, signatures...) to exercise the assertion consumer.
 * samlify is given a no-op schema validator (TOOLCHAIN.md); node-saml on our side checks the XML.
 */
import { createServer, type Server } from 'node:http'
import * as samlify from 'samlify'
import { createSelfSigned, generateRsaKeyPair } from '../../src/pki/x509.js'


samlify.setSchemaValidator({ validate: async () => 'skipped' })

const POST = 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST'
const REDIRECT = 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect'
const EMAIL_FORMAT = 'urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress'

export interface IdpKeys {
  certificatePem: string
  privateKeyPem: string
}

export async function generateIdpKeys(cn = 'Test IdP'): Promise<IdpKeys> {
  const keys = await generateRsaKeyPair(2048)
  const notBefore = new Date(Date.now() - 3600_000)
  const cert = await createSelfSigned({ subject: [['CN', cn]], keys, notBefore, notAfter: new Date(notBefore.getTime() + 2 * 86400_000), keyUsage: ['digitalSignature'] })
  return { certificatePem: cert.toString(), privateKeyPem: keys.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string }
}

/** What the IdP read from an AuthnRequest. */
export interface AuthnRequestInfo {
  id: string
  relayState: string
  issuer: string
  acsUrl: string
  destination: string
  signed: boolean
  /** samlify's parse result, for requestInfo when building the response. */
  raw: Awaited<ReturnType<samlify.IdentityProviderInstance['parseLoginRequest']>>
}

export interface ResponseOptions {
  /** NameID; default alice@example.test. */
  nameId?: string
  attributes?: Record<string, string | string[]>
  /** Which parts to sign; default both, as most IdPs do. */
  signAssertion?: boolean
  signResponse?: boolean
  /** Overrides; `null` drops the attribute (e.g. InResponseTo for an IdP-initiated response). */
  inResponseTo?: string | null
  subjectInResponseTo?: string | null
  audience?: string
  destination?: string
  recipient?: string
  issuer?: string
  assertionId?: string
  notBefore?: Date
  notOnOrAfter?: Date
  subjectNotOnOrAfter?: Date
  statusCode?: string
  /** Signed by this key instead of the IdP's (an attacker's key). */
  signWith?: IdpKeys
}

export interface TestIdp {
  entityId: string
  ssoUrl: string
  keys: IdpKeys
  /** IdP metadata XML as samlify publishes it (for SAML_IDP_METADATA). */
  metadata: string
  /** Environment for the app: SAML_IDP_METADATA inline. */
  env: Record<string, string>
  /**
   * Reads the AuthnRequest from the URL our start endpoint returned. With our SP metadata, a signed
   * request's signature is verified against the certificate in it.
   */
  readRequest(url: string, spMetadata?: string): Promise<AuthnRequestInfo>
  /** Base64 SAMLResponse for `request` (ACS and audience from it and `sp`). */
  respond(request: { id: string }, sp: { entityId: string; acsUrl: string }, options?: ResponseOptions): Promise<string>
}

export async function createTestIdp(options: { entityId?: string; ssoUrl?: string; keys?: IdpKeys } = {}): Promise<TestIdp> {
  const entityId = options.entityId ?? 'https://idp.example.test/saml/metadata'
  const ssoUrl = options.ssoUrl ?? 'https://idp.example.test/saml/sso'
  const keys = options.keys ?? (await generateIdpKeys())
  const idpFor = (k: IdpKeys, wantAuthnRequestsSigned = false) =>
    samlify.IdentityProvider({
      entityID: entityId,
      privateKey: k.privateKeyPem,
      signingCert: k.certificatePem,
      singleSignOnService: [{ Binding: REDIRECT, Location: ssoUrl }],
      nameIDFormat: [EMAIL_FORMAT],
      wantAuthnRequestsSigned,
    })
  const idp = idpFor(keys)
  // samlify verifies a redirect-binding signature only when the IdP wants signed requests.
  const verifyingIdp = idpFor(keys, true)
  const metadata = idp.getMetadata()

  // samlify reads the request against an SP description; AuthnRequestsSigned comes from our metadata
  // when the test gives it, so a signed request is verified with the SP certificate.
  const spFor = (sp: { entityId: string; acsUrl: string }, flags: { assertion: boolean; response: boolean }) =>
    samlify.ServiceProvider({
      entityID: sp.entityId,
      assertionConsumerService: [{ Binding: POST, Location: sp.acsUrl }],
      wantAssertionsSigned: flags.assertion,
      wantMessageSigned: flags.response,
    })

  return {
    entityId,
    ssoUrl,
    keys,
    metadata,
    env: { SAML_IDP_METADATA: metadata },

    async readRequest(url: string, spMetadata?: string) {
      const u = new URL(url)
      const query = Object.fromEntries(u.searchParams)
      // The signed octet string is the query as sent, in this order (saml-bindings 3.4.4.1).
      const raw = u.search.slice(1).split('&')
      const pick = (name: string) => raw.find((p) => p.startsWith(`${name}=`))
      const octetString = ['SAMLRequest', 'RelayState', 'SigAlg'].map(pick).filter(Boolean).join('&')
      const sp = spMetadata ? samlify.ServiceProvider({ metadata: spMetadata }) : samlify.ServiceProvider({ entityID: 'unknown', authnRequestsSigned: false })
      const parsed = await (query.Signature ? verifyingIdp : idp).parseLoginRequest(sp, 'redirect', { query, octetString })
      const request = parsed.extract.request as Record<string, string>
      return {
        id: request.id!,
        relayState: query.RelayState ?? '',
        issuer: String(parsed.extract.issuer),
        acsUrl: request.assertionConsumerServiceUrl!,
        destination: request.destination!,
        signed: Boolean(query.Signature),
        raw: parsed,
      }
    },

    async respond(request, sp, o = {}) {
      const signAssertion = o.signAssertion ?? true
      const signResponse = o.signResponse ?? true
      const now = new Date()
      const later = new Date(now.getTime() + 5 * 60_000)
      const pick = <T>(key: keyof ResponseOptions, fallback: T): T | undefined => (key in o ? (o[key] as T | undefined) ?? undefined : fallback)
      const inResponseTo = pick('inResponseTo', request.id)
      const values: Record<string, string | undefined> = {
        ID: `_r${crypto.randomUUID().replace(/-/g, '')}`,
        AssertionID: o.assertionId ?? `_a${crypto.randomUUID().replace(/-/g, '')}`,
        Destination: o.destination ?? sp.acsUrl,
        Audience: o.audience ?? sp.entityId,
        SubjectRecipient: o.recipient ?? sp.acsUrl,
        Issuer: o.issuer ?? entityId,
        IssueInstant: now.toISOString(),
        StatusCode: o.statusCode ?? 'urn:oasis:names:tc:SAML:2.0:status:Success',
        ConditionsNotBefore: (o.notBefore ?? new Date(now.getTime() - 1000)).toISOString(),
        ConditionsNotOnOrAfter: (o.notOnOrAfter ?? later).toISOString(),
        SubjectConfirmationDataNotOnOrAfter: (o.subjectNotOnOrAfter ?? o.notOnOrAfter ?? later).toISOString(),
        NameIDFormat: EMAIL_FORMAT,
        NameID: o.nameId ?? 'alice@example.test',
      }
      let template = samlify.SamlLib.defaultLoginResponseTemplate.context
        .replace('{AuthnStatement}', authnStatement(now))
        .replace('{AttributeStatement}', attributeStatement(o.attributes ?? {}))
      // The template uses {InResponseTo} twice (Response and SubjectConfirmationData); split them.
      template = template.replace('InResponseTo="{InResponseTo}"', 'InResponseTo="{ResponseInResponseTo}"')
      const xml = samlify.SamlLib.replaceTagsByValue(template, {
        ...values,
        ResponseInResponseTo: inResponseTo,
        InResponseTo: pick('subjectInResponseTo', inResponseTo),
      })
      if (!signAssertion && !signResponse) return Buffer.from(xml).toString('base64')
      const signer = o.signWith ? idpFor(o.signWith) : idp
      const result = await signer.createLoginResponse(spFor(sp, { assertion: signAssertion, response: signResponse }), request as never, 'post', {}, {
        customTagReplacement: () => ({ id: values.ID!, context: xml }),
      })
      return result.context
    },
  }
}

function authnStatement(now: Date): string {
  return `<saml:AuthnStatement AuthnInstant="${now.toISOString()}" SessionIndex="_s${crypto.randomUUID().replace(/-/g, '')}"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>`
}

function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
}

function attributeStatement(attributes: Record<string, string | string[]>): string {
  const entries = Object.entries(attributes)
  if (entries.length === 0) return ''
  const attrs = entries
    .map(([name, value]) => {
      const values = (Array.isArray(value) ? value : [value]).map((v) => `<saml:AttributeValue xsi:type="xs:string">${xmlEscape(v)}</saml:AttributeValue>`).join('')
      return `<saml:Attribute Name="${xmlEscape(name)}" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic">${values}</saml:Attribute>`
    })
    .join('')
  return `<saml:AttributeStatement>${attrs}</saml:AttributeStatement>`
}

/** Decodes, edits and re-encodes a base64 SAMLResponse (for tampering after signing). */
export function editResponse(samlResponse: string, edit: (xml: string) => string): string {
  return Buffer.from(edit(Buffer.from(samlResponse, 'base64').toString('utf8'))).toString('base64')
}

/**
 * The IdP as a web server for the browser test: GET {path}?SAMLRequest=... answers a page that
 * auto-submits the signed Response to the ACS with RelayState, as a real IdP does after login.
 */
export async function serveIdp(idp: TestIdp, sp: { entityId: string; acsUrl: string }, options: ResponseOptions = {}): Promise<{ server: Server; close(): Promise<void>; requests: AuthnRequestInfo[]; referers: (string | undefined)[] }> {
  const requests: AuthnRequestInfo[] = []
  const referers: (string | undefined)[] = []
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', idp.ssoUrl)
    if (url.pathname !== new URL(idp.ssoUrl).pathname) {
      res.writeHead(404).end()
      return
    }
    referers.push(req.headers.referer)
    idp
      .readRequest(url.toString())
      .then(async (request) => {
        requests.push(request)
        const samlResponse = await idp.respond(request, sp, options)
        const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;')
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
        res.end(`<!doctype html><html><body><form id="f" method="post" action="${esc(request.acsUrl)}">
<input type="hidden" name="SAMLResponse" value="${esc(samlResponse)}">
<input type="hidden" name="RelayState" value="${esc(request.relayState)}">
<noscript><button type="submit">Continue</button></noscript></form>
<script>document.getElementById('f').submit()</script></body></html>`)
      })
      .catch((err: Error) => {
        res.writeHead(400, { 'content-type': 'text/plain' }).end(`IdP could not read the AuthnRequest: ${err.message}`)
      })
  })
  await new Promise<void>((resolve) => server.listen(Number(new URL(idp.ssoUrl).port || 0), '127.0.0.1', resolve))
  return {
    server,
    requests,
    referers,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}

