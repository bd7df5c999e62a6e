/**
 * An in-process APNs: HTTP/2 over TLS on 127.0.0.1 with its own throwaway CA, requiring a client
 * certificate from that CA as api.push.apple.com requires the MDM push certificate. It checks what Apple
 * documents for a request (POST /3/device/<hex token>, apns-topic matching the certificate, apns-push-type,
 * apns-priority, apns-expiration, a non-empty body) and answers 200 + apns-id, or what a test programmed for
 * a token. It records every request with the client certificate's UID as Node's TLS layer parsed it (not
 * through our DER code), and can send GOAWAY or drop connections to exercise reconnection.
 *
 * One addition Apple does not document: a body other than exactly {"mdm":"<string>"} gets 400 BadPayload,
 * so a malformed MDM push fails loudly here instead of silently on a device.
 */
import { X509Certificate, randomUUID, type KeyObject } from 'node:crypto'
import http2, { type Http2Session, type ServerHttp2Stream } from 'node:http2'
import type { AddressInfo } from 'node:net'
import type { TLSSocket } from 'node:tls'
import forge from 'node-forge'
import type { DistinguishedName } from '../../src/pki/names.js'
import { CertificateSigner, createSelfSigned, generateRsaKeyPair, type KeyPair } from '../../src/pki/x509.js'

/** One programmed answer. `hang`: never answer (the client's timeout fires). */
export type FakeAnswer = { status: number; reason?: string; timestamp?: number } | { hang: true }

export interface RecordedPush {
  method: string
  path: string
  token: string
  /** Request headers, pseudo-headers excluded. */
  headers: Record<string, string>
  body: string
  /** The client certificate's subject UID and CN, as Node's TLS layer reports them. */
  clientUid: string | undefined
  clientCn: string | undefined
  /** Which TLS connection (1-based, in accept order) carried the request. */
  connection: number
  /** What the fake answered (0: nothing, a `hang`). */
  status: number
}

export interface PushIdentityFixture {
  topic: string
  certificate: X509Certificate
  privateKey: KeyObject
  certPem: string
  keyPem: string
  /** PKCS#12 made with node-forge (3DES, SHA-1 MAC, as older Keychain exports), protected by `password`. */
  p12: Buffer
  password: string
}

export interface PushIdentityOptions {
  /** The subject UID; `null` for a certificate without one. Default com.apple.mgmt.External.<uuid>. */
  topic?: string | null
  notBefore?: Date
  notAfter?: Date
  password?: string
  keys?: KeyPair
}

export interface FakeApns {
  /** https://localhost:<port> */
  url: string
  /** The fake's CA (PEM): it signed the server certificate and signs push identities. */
  caPem: string
  requests: RecordedPush[]
  /** HTTP/2 sessions (one per TLS connection) opened so far. */
  readonly connections: number
  /** Answers for `token`, consumed in order; afterwards 200. */
  respond(token: string, answers: FakeAnswer[]): void
  /**
   * Sends GOAWAY ({"reason":"Shutdown"}, as APNs does) on every open session, cancels unanswered (`hang`)
   * streams, and resolves when the sessions are closed.
   */
  goaway(): Promise<void>
  /** Destroys every open connection without a GOAWAY. */
  dropConnections(): void
  /** A push identity signed by this fake's CA. */
  issuePushIdentity(options?: PushIdentityOptions): Promise<PushIdentityFixture>
  close(): Promise<void>
}

const DAY = 86_400_000

export async function startFakeApns(options: { maxConcurrentStreams?: number } = {}): Promise<FakeApns> {
  const now = Date.now()
  const caKeys = await generateRsaKeyPair()
  const caCertificate = await createSelfSigned({
    subject: [['CN', 'Fake APNs Test CA']],
    keys: caKeys,
    notBefore: new Date(now - DAY),
    notAfter: new Date(now + 30 * DAY),
    ca: true,
    keyUsage: ['keyCertSign', 'cRLSign'],
  })
  const signer = await CertificateSigner.create({ certificate: caCertificate, privateKey: caKeys.privateKey })
  const serverKeys = await generateRsaKeyPair()
  // No subjectAltName (the DER writer has none): Node falls back to the CN for the host name check.
  const serverCertificate = await signer.issue({
    subject: [['CN', 'localhost']],
    publicKey: serverKeys.publicKey,
    notBefore: new Date(now - DAY),
    notAfter: new Date(now + 30 * DAY),
    keyUsage: ['digitalSignature', 'keyEncipherment'],
    extendedKeyUsage: ['serverAuth'],
  })
  const caPem = caCertificate.toString()

  const answers = new Map<string, FakeAnswer[]>()
  const requests: RecordedPush[] = []
  const sessions = new Set<Http2Session>()
  const hanging = new Set<ServerHttp2Stream>()
  const sockets = new Set<TLSSocket>()
  const connectionOf = new WeakMap<Http2Session, number>()
  let connections = 0

  const server = http2.createSecureServer({
    cert: serverCertificate.toString(),
    key: serverKeys.privateKey.export({ type: 'pkcs8', format: 'pem' }),
    ca: caPem,
    requestCert: true,
    rejectUnauthorized: true,
    settings: options.maxConcurrentStreams === undefined ? {} : { maxConcurrentStreams: options.maxConcurrentStreams },
  })
  server.on('secureConnection', (socket: TLSSocket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  server.on('session', (session) => {
    connectionOf.set(session, ++connections)
    sessions.add(session)
    session.on('close', () => sessions.delete(session))
    session.on('error', () => {})
  })
  server.on('stream', (stream, headers) => {
    const chunks: Buffer[] = []
    stream.on('data', (c: Buffer) => chunks.push(c))
    stream.on('end', () => {
      const session = stream.session
      const peer = (session?.socket as TLSSocket | undefined)?.getPeerCertificate()
      const plain: Record<string, string> = {}
      for (const [k, v] of Object.entries(headers)) if (!k.startsWith(':') && v !== undefined) plain[k] = Array.isArray(v) ? v.join(', ') : String(v)
      const path = String(headers[':path'] ?? '')
      const record: RecordedPush = {
        method: String(headers[':method']),
        path,
        token: /^\/3\/device\/([^/?]*)$/.exec(path)?.[1] ?? '',
        headers: plain,
        body: Buffer.concat(chunks).toString('utf8'),
        clientUid: asString(peer?.subject?.UID),
        clientCn: asString(peer?.subject?.CN),
        connection: (session && connectionOf.get(session)) ?? 0,
        status: 0,
      }
      requests.push(record)
      const answer = checkRequest(record) ?? answers.get(record.token)?.shift() ?? { status: 200 }
      if ('hang' in answer) {
        hanging.add(stream)
        stream.on('close', () => hanging.delete(stream))
        return
      }
      record.status = answer.status
      reply(stream, answer)
    })
    stream.on('error', () => {})
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port

  return {
    url: `https://localhost:${port}`,
    caPem,
    requests,
    get connections() {
      return connections
    },
    respond(token, list) {
      answers.set(token, [...(answers.get(token) ?? []), ...list])
    },
    async goaway() {
      await Promise.all(
        [...sessions].map(
          (session) =>
            new Promise<void>((resolve) => {
              session.once('close', () => resolve())
              session.goaway(http2.constants.NGHTTP2_NO_ERROR, 0, Buffer.from(JSON.stringify({ reason: 'Shutdown' })))
              session.close()
              // Unanswered streams would hold the graceful close open forever.
              for (const stream of hanging) if (stream.session === session) stream.close(http2.constants.NGHTTP2_CANCEL)
            }),
        ),
      )
    },
    dropConnections() {
      for (const socket of sockets) socket.destroy()
    },
    issuePushIdentity: (opts = {}) => createPushIdentity({ ...opts, signer }),
    async close() {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/** The checks APNs makes before looking at the token's state (its documented 400/404/405 reasons). */
function checkRequest(r: RecordedPush): FakeAnswer | undefined {
  const fail = (status: number, reason: string) => ({ status, reason })
  if (r.method !== 'POST') return fail(405, 'MethodNotAllowed')
  if (!r.path.startsWith('/3/device/')) return fail(404, 'BadPath')
  if (r.token === '') return fail(400, 'MissingDeviceToken')
  if (!/^(?:[0-9a-f]{2})+$/i.test(r.token)) return fail(400, 'BadDeviceToken')
  const topic = r.headers['apns-topic']
  if (!topic) return fail(400, 'MissingTopic')
  if (topic !== r.clientUid) return fail(400, 'TopicDisallowed')
  if (r.headers['apns-push-type'] !== 'mdm') return fail(400, 'InvalidPushType')
  const priority = r.headers['apns-priority']
  if (priority !== undefined && priority !== '5' && priority !== '10') return fail(400, 'BadPriority')
  const expiration = r.headers['apns-expiration']
  if (expiration !== undefined && !/^\d+$/.test(expiration)) return fail(400, 'BadExpirationDate')
  if (r.body === '') return fail(400, 'PayloadEmpty')
  let payload: unknown
  try {
    payload = JSON.parse(r.body)
  } catch {
    return fail(400, 'BadPayload')
  }
  const keys = payload && typeof payload === 'object' ? Object.keys(payload) : []
  if (keys.length !== 1 || typeof (payload as { mdm?: unknown }).mdm !== 'string') return fail(400, 'BadPayload')
  return undefined
}

function reply(stream: ServerHttp2Stream, answer: { status: number; reason?: string; timestamp?: number }): void {
  if (stream.destroyed) return
  const apnsId = randomUUID().toUpperCase()
  if (answer.status === 200) {
    stream.respond({ ':status': 200, 'apns-id': apnsId }, { endStream: true })
    return
  }
  const body: Record<string, unknown> = { reason: answer.reason ?? 'InternalServerError' }
  if (answer.timestamp !== undefined) body.timestamp = answer.timestamp
  stream.respond({ ':status': answer.status, 'apns-id': apnsId, 'content-type': 'application/json' })
  stream.end(JSON.stringify(body))
}

function asString(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value
}

/**
 * A push identity like Apple's (subject UID=<topic>, CN=APSP:<uuid>, C=US; clientAuth), issued by `signer`,
 * or self-signed without one (a certificate APNs would not know).
 */
export async function createPushIdentity(options: PushIdentityOptions & { signer?: CertificateSigner } = {}): Promise<PushIdentityFixture> {
  const id = randomUUID()
  const topic = options.topic === undefined ? `com.apple.mgmt.External.${id}` : options.topic
  const keys = options.keys ?? (await generateRsaKeyPair())
  const subject: DistinguishedName = [...(topic === null ? [] : [['UID', topic] as const]), ['CN', `APSP:${id}`], ['C', 'US']]
  const params = {
    subject,
    notBefore: options.notBefore ?? new Date(Date.now() - DAY),
    notAfter: options.notAfter ?? new Date(Date.now() + 365 * DAY),
    keyUsage: ['digitalSignature' as const],
    extendedKeyUsage: ['clientAuth' as const],
  }
  const certificate = options.signer
    ? await options.signer.issue({ ...params, publicKey: keys.publicKey })
    : await createSelfSigned({ ...params, keys })
  const certPem = certificate.toString()
  const keyPem = keys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
  const password = options.password ?? 'correct horse battery staple'
  const p12Asn1 = forge.pkcs12.toPkcs12Asn1(forge.pki.privateKeyFromPem(keyPem), [forge.pki.certificateFromPem(certPem)], password, {
    algorithm: '3des',
    friendlyName: `APSP:${id}`,
  })
  const p12 = Buffer.from(forge.asn1.toDer(p12Asn1).getBytes(), 'binary')
  return { topic: topic ?? '', certificate, privateKey: keys.privateKey, certPem, keyPem, p12, password }
}
