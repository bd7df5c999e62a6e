/**
 * `/api/v1/admin/abm`: the Apple Business Manager connection (services/abm.ts, README "Apple Business
 * Manager"). Download the certificate to upload to the MDM server in ABM, upload the server token ABM
 * gives back, see the connection, and register, read or remove the account-driven enrollment service
 * discovery URL that ABM hands devices whose domain does not serve discovery itself.
 */
import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { MAX_TOKEN_FILE_BYTES } from '../../abm/server-token.js'
import type { AbmStatus } from '../../services/abm.js'
import { audit } from './audit.js'
import { isoDate } from './fields.js'
import { errorBody } from './pagination.js'

const tags = ['abm']
const DAY_MS = 86_400_000

const statusJson = z.object({
  connected: z.boolean().describe('A server token is stored and Apple accepted it when it was uploaded'),
  certificate: z
    .object({
      subject: z.string(),
      fingerprint_sha256: z.string().describe('lowercase hex SHA-256 of the certificate DER'),
      not_after: z.iso.datetime(),
    })
    .nullable()
    .describe('The certificate to upload to the MDM server in ABM; null until GET /api/v1/admin/abm/certificate generated it'),
  server_uuid: z.string().nullable().describe("ABM's server_uuid of this MDM server (Get Account Detail): the iss of com.apple.maid tokens"),
  server_name: z.string().nullable().describe('The name of the MDM server in ABM'),
  organization: z
    .object({
      name: z.string().nullable(),
      email: z.string().nullable(),
      phone: z.string().nullable(),
      address: z.string().nullable(),
      id: z.string().nullable(),
      type: z.string().nullable(),
    })
    .nullable()
    .describe('org_name, org_email, org_phone, org_address, org_id and org_type as Get Account Detail answered at the last upload'),
  admin_id: z.string().nullable().describe('The Managed Apple Account that downloaded the token in use'),
  token_expires_at: z.iso.datetime().nullable().describe("The server token's access_token_expiry (ABM tokens last one year)"),
  token_expires_in_days: z.number().int().nullable(),
  token_uploaded_at: z.iso.datetime().nullable(),
  account_checked_at: z.iso.datetime().nullable(),
  maid_tokens: z.boolean().describe('New enrollment profiles offer com.apple.mdm.token and GetToken com.apple.maid is answered (connected and MAID_TOKENS)'),
  discovery: z
    .object({ url: z.string(), registered_at: z.iso.datetime() })
    .nullable()
    .describe('The service discovery URL this server registered at ABM (GET /api/v1/admin/abm/discovery asks ABM itself)'),
  warning: z.string().nullable().describe('Set within 30 days of the token expiry, and once it expired'),
})

const statusOf = (s: AbmStatus, now = new Date()): z.infer<typeof statusJson> => ({
  connected: s.connected,
  certificate: s.certificate ? { subject: s.certificate.subject, fingerprint_sha256: s.certificate.fingerprintSha256, not_after: isoDate(s.certificate.notAfter) } : null,
  server_uuid: s.serverUuid ?? null,
  server_name: s.account?.server_name ?? null,
  organization: s.account
    ? {
        name: s.account.org_name ?? null,
        email: s.account.org_email ?? null,
        phone: s.account.org_phone ?? null,
        address: s.account.org_address ?? null,
        id: s.account.org_id ?? null,
        type: s.account.org_type ?? null,
      }
    : null,
  admin_id: s.account?.admin_id ?? s.account?.facilitator_id ?? null,
  token_expires_at: s.tokenExpiresAt ? isoDate(s.tokenExpiresAt) : null,
  token_expires_in_days: s.tokenExpiresAt ? Math.floor((s.tokenExpiresAt.getTime() - now.getTime()) / DAY_MS) : null,
  token_uploaded_at: s.tokenUploadedAt ? isoDate(s.tokenUploadedAt) : null,
  account_checked_at: s.accountCheckedAt ? isoDate(s.accountCheckedAt) : null,
  maid_tokens: s.maidTokens,
  discovery: s.discovery ? { url: s.discovery.url, registered_at: isoDate(s.discovery.registeredAt) } : null,
  warning: s.warning ?? null,
})

const tokenBody = z
  .union([
    z.strictObject({ token: z.string().min(1).max(MAX_TOKEN_FILE_BYTES).describe('The content of the .p7m file ABM downloaded (S/MIME text)') }),
    z.string().min(1).max(MAX_TOKEN_FILE_BYTES).describe('The .p7m file itself, with Content-Type application/pkcs7-mime, application/octet-stream or text/plain'),
  ])
  .describe('The server token file ABM gives for this MDM server ("Download Token")')

const discoveryCheck = z.object({
  user_identifier: z.string().describe('The test account the URL was asked about'),
  status: z.number().int(),
  version: z.string().describe('Servers[0].Version of the answer'),
  base_url: z.string().describe('Servers[0].BaseURL of the answer'),
})

const errors = { 400: errorBody, 401: errorBody, 409: errorBody, 502: errorBody }

export default async function abmRoutes(scope: FastifyInstance) {
  const app = scope.withTypeProvider<ZodTypeProvider>()
  const abm = app.services.abm

  // The token file as ABM downloads it: S/MIME text (or DER); kept as a latin1 string, which is lossless.
  scope.addContentTypeParser(['application/pkcs7-mime', 'application/x-pkcs7-mime', 'application/octet-stream'], { parseAs: 'buffer', bodyLimit: MAX_TOKEN_FILE_BYTES }, (_request, body, done) =>
    done(null, (body as Buffer).toString('latin1')),
  )

  app.get(
    '/abm',
    {
      schema: {
        tags,
        summary: 'Show the Apple Business Manager connection',
        description: 'Connected or not, the MDM server and organisation ABM reported, the server token expiry (with a warning from 30 days before), the registered service discovery URL, and whether com.apple.maid tokens are served.',
        response: { 200: statusJson, 401: errorBody },
      },
    },
    async () => statusOf(await abm.status()),
  )

  app.get(
    '/abm/certificate',
    {
      schema: {
        tags,
        summary: 'Download the certificate to upload to ABM',
        description:
          'PEM (application/x-pem-file). Generated once (RSA 2048, self-signed, the private key stored encrypted with SERVER_SECRET like the server\'s other keys) and the same ever after. In Apple Business Manager upload it to the MDM server ("Upload Public Key"); ABM encrypts the server token to it, and com.apple.maid tokens are signed with its key.',
        produces: ['application/x-pem-file'],
        response: { 200: z.string().describe('The certificate, PEM'), 401: errorBody },
      },
    },
    async (request, reply) => {
      const { identity, generated } = await abm.identity()
      if (generated) audit(request, 'abm.certificate.generate', { fingerprint256: identity.certificate.fingerprint256 })
      return reply.type('application/x-pem-file').header('content-disposition', 'attachment; filename="abm-server-token-certificate.pem"').send(identity.certificate.toString())
    },
  )

  app.put(
    '/abm/token',
    {
      schema: {
        tags,
        summary: 'Upload the ABM server token',
        description: [
          'The `.p7m` file ABM downloads for the MDM server. The server decrypts it with the key of GET /api/v1/admin/abm/certificate, checks it with Apple (a session, then Get Account Detail for server_uuid and the organisation), and stores it encrypted with SERVER_SECRET. Upload a renewed token the same way before the old one expires.',
          '',
          'Errors: 409 `abm_certificate_missing` (no certificate generated yet); 400 `token_not_for_this_server` (encrypted to another certificate), `invalid_token`, `token_expired`, `abm_token_refused` (Apple refused it), `abm_terms_not_accepted`; 502 `abm_unreachable`, `abm_error`.',
        ].join('\n'),
        consumes: ['application/pkcs7-mime', 'application/octet-stream', 'text/plain', 'application/json'],
        body: tokenBody,
        response: { 200: statusJson, ...errors },
      },
    },
    async (request) => {
      const file = typeof request.body === 'string' ? request.body : request.body.token
      const status = await abm.uploadToken(file)
      audit(request, 'abm.token.upload', { serverUuid: status.serverUuid, serverName: status.account?.server_name, orgName: status.account?.org_name, tokenExpiresAt: status.tokenExpiresAt })
      return statusOf(status)
    },
  )

  app.get(
    '/abm/discovery',
    {
      schema: {
        tags,
        summary: 'Read the service discovery URL registered at ABM',
        description: 'Asks ABM (Fetch Account-Driven Enrollment Service Discovery). 404 `discovery_not_registered` when ABM holds none; 409 `abm_not_connected`.',
        response: { 200: z.object({ url: z.string(), last_updated_at: z.string().nullable().describe("ABM's last_updated_timestamp") }), 404: errorBody, ...errors },
      },
    },
    async () => {
      const found = await abm.fetchDiscovery()
      return { url: found.url, last_updated_at: found.lastUpdatedAt ?? null }
    },
  )

  app.put(
    '/abm/discovery',
    {
      schema: {
        tags,
        summary: 'Register the service discovery URL at ABM',
        description: [
          'iOS 18.2, iPadOS 18.2, macOS 15.2 and visionOS 2.2 ask ABM for the discovery URL when the domain of the account the user typed does not answer `/.well-known/com.apple.remotemanagement` (any HTTP error, a 403 included); ABM answers with this URL (Assign Account-Driven Enrollment Service Discovery). The domain must be verified in ABM.',
          '',
          'Default `url`: this server\'s own discovery endpoint, `SERVER_URL/.well-known/com.apple.remotemanagement`, which answers every enrolling domain with its team as configured (ENROLL_DOMAINS). Before registering, the server asks the URL about a test account (of the first ENROLL_DOMAINS domain) and refuses with 400 `discovery_check_failed` unless it answers discovery JSON. The URL must be https.',
        ].join('\n'),
        body: z.strictObject({ url: z.string().max(2048).optional().describe('default: SERVER_URL/.well-known/com.apple.remotemanagement') }).nullish(),
        response: { 200: z.object({ url: z.string(), registered_at: z.iso.datetime(), check: discoveryCheck }), ...errors },
      },
    },
    async (request) => {
      const done = await abm.registerDiscovery(request.body?.url)
      audit(request, 'abm.discovery.register', { url: done.url })
      return {
        url: done.url,
        registered_at: isoDate(done.registeredAt),
        check: { user_identifier: done.check.userIdentifier, status: done.check.status, version: done.check.version, base_url: done.check.baseUrl },
      }
    },
  )

  app.delete(
    '/abm/discovery',
    {
      schema: {
        tags,
        summary: 'Remove the service discovery URL from ABM',
        description: 'Remove Account-Driven Enrollment Profile: devices then get no discovery URL from ABM; the domain\'s own /.well-known/com.apple.remotemanagement keeps working.',
        response: { 200: z.object({ removed: z.literal(true), previous_url: z.string().nullable().describe('What this server had registered') }), ...errors },
      },
    },
    async (request) => {
      const { previousUrl } = await abm.removeDiscovery()
      audit(request, 'abm.discovery.remove', { previousUrl })
      return { removed: true as const, previous_url: previousUrl }
    },
  )
}
