/**
 * A simulated Apple device doing account-driven enrollment through a `Transport`, user enrollment
 * (`mdm-byod`, a personal device named by its EnrollmentID) or device enrollment (`mdm-adde`, an
 * organisation-owned device named by its UDID, which also gives its serial number and takes the commands
 * only device enrollment allows); the one discovery announces unless the caller insists on one. The device side of
 * every exchange in PROTOCOL.md, built on src/protocol (message builders beside the parsers the server
 * uses) and src/pki (CMS, SCEP requester). It holds what a device holds: the enroll body it signs with,
 * the access token, the profile, its SCEP identity, its push token, the profiles and apps commands gave
 * it, the declarations it synced.
 *
 * Each step method either returns what it found or throws a `StepFailure` with the facts. The order a
 * device follows is in flow.ts; the test suite's emulator (test/helpers/device.ts) drives the same
 * methods through `app.inject`.
 */
import { generateKeyPair, randomBytes, randomUUID, type KeyObject, type X509Certificate } from 'node:crypto'
import { promisify } from 'node:util'
import { signCms } from '../pki/cms.js'
import type { DigestName } from '../pki/oids.js'
import type { KeyPairLike } from '../pki/scep/client.js'
import { parseWwwAuthenticate, type SignInChallenge } from '../protocol/challenge.js'
import { buildCheckin, buildCommandReport, CHECKIN_CONTENT_TYPE, COMMAND_CONTENT_TYPE } from '../protocol/checkin.js'
import type { Declaration } from '../protocol/declarations.js'
import type { ModelFamily } from '../protocol/discovery.js'
import type { Enrollment } from '../protocol/profile-rules.js'
import { profileSummary, type DeviceState } from './answers.js'
import { declarativeSync, type SyncResult } from './ddm.js'
import { discover, type Discovered } from './discovery.js'
import { checkEssoDocument } from './esso.js'
import { authenticateFields, MODELS, randomSerial, randomUdid, type DeviceModel } from './models.js'
import { readEnrollmentProfile, type ReceivedProfile } from './profile.js'
import { selfSignedEnrollBody } from './enroll-body.js'
import { recordedEnrollBody, RECORDED_ENROLL_DEVICE } from './recorded-enroll-body.js'
import { obtainIdentity } from './scep.js'
import { commandSession, type IdleResult, type ReportSender } from './session.js'
import { signIn, type SignInMethod } from './sign-in.js'
import { checkinFix, networkFacts, responseFacts, StepFailure, type StepName } from './steps.js'
import { TransportError, type Transport, type TransportResponse } from './transport.js'

export type { AnsweredCommand, IdleResult } from './session.js'

export type Channel = 'device' | 'user'

export interface SimulatedDeviceOptions<R extends TransportResponse> {
  transport: Transport<R>
  /** iPhone by default. */
  model?: ModelFamily | DeviceModel
  /** What the user typed in Settings (`alice@example.com`). */
  userIdentifier?: string
  enrollmentId?: string
  /** `recorded`: the Apple-signed iPhone body (default); `self-signed`: a body of this model signed by a key of its own. */
  enrollBody?: 'recorded' | 'self-signed'
  /** Mdm-Signature's digest; SHA-1 like real devices. */
  digest?: DigestName
  /**
   * `device` enrolls as account-driven device enrollment (mdm-adde), `user` as user enrollment (mdm-byod);
   * a discovery answer for the other one is a failure naming the team's setting. Unset: what discovery
   * announces (user enrollment when discovery is skipped).
   */
  enrollment?: Enrollment
  /** Device enrollment: the UDID and serial number it names itself by (random ones by default). */
  udid?: string
  serialNumber?: string
}

export interface SendOptions {
  contentType?: string | null
  /** The bearer token; the channel's by default, null for none. */
  token?: string | null
  /** Replaces the computed Mdm-Signature (null: none). */
  signature?: string | null
  signer?: { certificate: X509Certificate; privateKey: KeyObject }
  digest?: DigestName
  headers?: Record<string, string>
  /** PUT to this URL instead of ServerURL / CheckInURL. */
  url?: string
}

const USER_AGENT = 'byod-mdm-simulator'
const generateKeyPairAsync = promisify(generateKeyPair)

export class SimulatedDevice<R extends TransportResponse = TransportResponse> {
  readonly transport: Transport<R>
  readonly model: DeviceModel
  userIdentifier: string
  /** User enrollment's name for the device (EnrollmentID). */
  enrollmentId: string
  /** Device enrollment's: the UDID and the serial number Authenticate and DeviceInformation give. */
  readonly udid: string
  readonly serialNumber: string
  /** What the caller insisted on; undefined: follow discovery. */
  readonly requestedEnrollment: Enrollment | undefined
  enrollment: Enrollment
  /** A Mac's user channel (EnrollmentUserID, or UserID under device enrollment), once it is opened. */
  enrollmentUserId: string | undefined
  readonly digest: DigestName
  readonly enrollBodyKind: 'recorded' | 'self-signed'
  private enrollBodyBytes: Buffer | undefined
  private preparedKeys: KeyPairLike | undefined

  enrollUrl: string | undefined
  challenge: SignInChallenge | undefined
  /** X-Apple-MDM-ESSO(-Developer) from the 401. */
  esso: { url: string; developer: boolean } | undefined
  essoDeclarations: Declaration[] = []
  token: string | null = null
  refreshToken: string | undefined
  profile: ReceivedProfile | undefined
  keys: KeyPairLike | undefined
  certificate: X509Certificate | undefined
  topic: string | undefined
  serverUrl: string | undefined
  checkInUrl: string | undefined
  readonly pushToken = new Uint8Array(randomBytes(32))
  readonly pushMagic = randomUUID().toUpperCase()
  readonly profiles: DeviceState['profiles'] = new Map()
  readonly apps: DeviceState['apps'] = new Map()
  declarations = new Map<string, Declaration>()
  /** Commands a real device would act on destructively (EraseDevice, DeviceLock): noted, never done. */
  readonly noted: string[] = []

  constructor(options: SimulatedDeviceOptions<R>) {
    this.transport = options.transport
    this.model = typeof options.model === 'object' ? options.model : MODELS[options.model ?? 'iPhone']
    this.userIdentifier = options.userIdentifier ?? 'user@example.com'
    this.enrollmentId = options.enrollmentId ?? randomUUID().toUpperCase()
    this.digest = options.digest ?? 'sha1'
    this.enrollBodyKind = options.enrollBody ?? 'recorded'
    this.requestedEnrollment = options.enrollment
    this.enrollment = options.enrollment ?? 'user'
    this.udid = options.udid ?? randomUdid()
    this.serialNumber = options.serialNumber ?? randomSerial()
  }

  /** What the server knows the device by: the EnrollmentID, or under device enrollment the UDID. */
  get deviceId(): string {
    return this.enrollment === 'device' ? this.udid : this.enrollmentId
  }

  /** A device that enrolled already (the test suite's emulator builds them from parts). */
  static enrolled<R extends TransportResponse>(
    options: SimulatedDeviceOptions<R> & { keys: KeyPairLike; certificate: X509Certificate; topic: string; serverUrl: string; checkInUrl?: string; token: string | null },
  ): SimulatedDevice<R> {
    const device = new SimulatedDevice(options)
    Object.assign(device, { keys: options.keys, certificate: options.certificate, topic: options.topic, serverUrl: options.serverUrl, checkInUrl: options.checkInUrl ?? options.serverUrl, token: options.token })
    return device
  }

  /**
   * Makes the key SCEP will certify and the enroll body ahead of time (load mode: so that the client's
   * RSA key generation is not counted as the server's SCEP time).
   */
  async prepare(keySize = 2048): Promise<void> {
    await this.enrollBody()
    this.preparedKeys ??= (await generateKeyPairAsync('rsa', { modulusLength: keySize })) as KeyPairLike
  }

  /** The enroll request body: the recorded Apple-signed one, or this model's own signed by a self-signed key. */
  async enrollBody(): Promise<Buffer> {
    this.enrollBodyBytes ??= this.enrollBodyKind === 'recorded' ? recordedEnrollBody() : await selfSignedEnrollBody(this.model)
    return this.enrollBodyBytes
  }

  /** PRODUCT as the enroll body says it. */
  get enrollProduct(): string {
    return this.enrollBodyKind === 'recorded' ? RECORDED_ENROLL_DEVICE.product : this.model.productName
  }

  // -------------------------------------------------------------------------------------------------
  // Enrollment

  /** Service discovery at `base` (`https://<domain>`), following redirects as the device does. */
  async discover(base: string): Promise<Discovered> {
    const found = await discover(this.transport, base, this.userIdentifier, this.model.family, USER_AGENT, this.requestedEnrollment)
    this.enrollment = found.enrollment
    this.enrollUrl = found.baseUrl
    return found
  }

  /** The first POST: no token; a 401 with a challenge a device can follow. */
  async requestChallenge(enrollUrl = this.enrollUrl): Promise<{ challenge: SignInChallenge; esso?: { url: string; developer: boolean } }> {
    if (!enrollUrl) throw new Error('no enroll URL: discover() first or pass one')
    this.enrollUrl = enrollUrl
    const res = await this.postEnroll('enroll-challenge', enrollUrl, undefined)
    if (res.status === 200) {
      throw new StepFailure('enroll-challenge', { expected: '401 with WWW-Authenticate (sign-in first)', got: '200: a profile without any sign-in', status: 200, url: enrollUrl, fix: 'the server hands out profiles to anyone: it must challenge with 401' })
    }
    if (res.status !== 401) throw new StepFailure('enroll-challenge', responseFacts(res, '401 with WWW-Authenticate: Bearer method=...', enrollUrl, this.enrollRefusalFix(res)))
    const challenge = parseWwwAuthenticate(res.headers['www-authenticate'])
    if ('problem' in challenge) {
      throw new StepFailure('enroll-challenge', { expected: 'WWW-Authenticate: Bearer method="apple-as-web" or "apple-oauth2" with its parameters', got: `${challenge.problem}: a device cancels enrollment`, status: 401, url: enrollUrl })
    }
    this.challenge = challenge
    const essoHeader = res.headers['x-apple-mdm-esso'] ?? res.headers['x-apple-mdm-esso-developer']
    this.esso = essoHeader ? { url: essoHeader, developer: !res.headers['x-apple-mdm-esso'] } : undefined
    return { challenge, esso: this.esso }
  }

  private enrollRefusalFix(res: TransportResponse): string | undefined {
    const text = res.body.toString('utf8')
    if (res.status === 403 && /untrusted_device/.test(text)) {
      return this.enrollBodyKind === 'self-signed'
        ? 'the server checks that an Apple device signed the enroll request (ENROLL_DEVICE_SIGNATURE=strict) and --self-signed sends a stand-in signature: drop --self-signed to send the recorded Apple-signed body, or set ENROLL_DEVICE_SIGNATURE=log on the server while testing'
        : 'the server does not accept the recorded Apple-signed body: is its Apple CA pinning changed?'
    }
    if (res.status === 404) return 'the enroll URL is unknown to the server: the team\'s URL was rotated, or the URL is mistyped; take it from discovery or the server\'s banner'
    if (res.status === 400) return 'the server could not read the enroll request'
    return undefined
  }

  /** Fetches and checks the Enrollment SSO document the 401 named (a device installs the SSO app from it). */
  async checkEsso(): Promise<{ mode: 'standard' | 'developer'; declarations: number }> {
    if (!this.esso) throw new Error('no Enrollment SSO header')
    const checked = await checkEssoDocument(this.transport, this.esso, USER_AGENT)
    this.essoDeclarations = checked.declarations
    return { mode: checked.mode, declarations: checked.declarations.length }
  }

  async signIn(method: SignInMethod): Promise<string> {
    if (!this.challenge) throw new Error('no challenge: requestChallenge() first')
    const done = await signIn(this.transport, this.challenge, method, this.userIdentifier, USER_AGENT)
    this.token = done.accessToken
    this.refreshToken = done.refreshToken
    return done.summary
  }

  /** The second POST: same body, the token; a signed profile. */
  async fetchProfile(): Promise<Buffer> {
    if (!this.enrollUrl || !this.token) throw new Error('no enroll URL or token')
    const res = await this.postEnroll('enroll', this.enrollUrl, this.token)
    if (res.status !== 200) {
      const fix =
        res.status === 401
          ? 'the server did not take the access token: a token fetches one profile only (sign in again), it expired, or it was issued for another team\'s enroll URL'
          : this.enrollRefusalFix(res)
      throw new StepFailure('enroll', responseFacts(res, '200 application/x-apple-aspen-config (the signed profile)', this.enrollUrl, fix))
    }
    return res.body
  }

  /** Reads the signed profile; sets the URLs, the topic and the enrollment profile in ProfileList. */
  readProfile(body: Buffer): ReceivedProfile {
    const profile = readEnrollmentProfile(body, { platform: this.model.platform, enrollment: this.enrollment, userIdentifier: this.userIdentifier })
    this.profile = profile
    this.serverUrl = profile.serverUrl
    this.checkInUrl = profile.checkInUrl
    this.topic = profile.topic
    this.profiles.set(String(profile.dict.PayloadIdentifier), profileSummary(profile.dict))
    return profile
  }

  /** SCEP with the profile's payload: the device's identity certificate. */
  async scep(): Promise<{ certificate: X509Certificate; notes: string[] }> {
    if (!this.profile) throw new Error('no profile')
    const keySize = typeof this.profile.scep.Keysize === 'number' ? this.profile.scep.Keysize : 2048
    const keys = this.preparedKeys?.publicKey.asymmetricKeyDetails?.modulusLength === keySize ? this.preparedKeys : undefined
    const identity = await obtainIdentity(this.transport, this.profile.scep, { userAgent: USER_AGENT, keys })
    this.keys = identity.keys
    this.certificate = identity.certificate
    return identity
  }

  // -------------------------------------------------------------------------------------------------
  // Check-in and the command channel

  /** Base64 detached CMS over exactly `body` (Mdm-Signature). */
  sign(body: Uint8Array, options: Pick<SendOptions, 'signer' | 'digest'> = {}): string {
    const signer = options.signer ?? { certificate: this.certificate!, privateKey: this.keys!.privateKey }
    return signCms({ content: body, certificate: signer.certificate, privateKey: signer.privateKey, detached: true, digest: options.digest ?? this.digest }).toString('base64')
  }

  /** The bearer a channel sends: iOS and visionOS on every request, macOS only on the user channel. */
  channelToken(channel: Channel): string | null {
    return this.model.platform === 'macOS' && channel === 'device' ? null : this.token
  }

  /** PUTs `body` to ServerURL (or `url`), signed, with the channel's token: the transport's response as is. */
  send(body: Uint8Array | string, options: SendOptions = {}): Promise<R> {
    const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : Buffer.from(body)
    const headers: Record<string, string> = { 'user-agent': 'MDM/1.0', ...options.headers }
    if (options.contentType !== null) headers['content-type'] = options.contentType ?? CHECKIN_CONTENT_TYPE
    const token = options.token === undefined ? this.token : options.token
    if (token) headers.authorization = `Bearer ${token}`
    const signature = options.signature === undefined ? this.sign(bytes, options) : options.signature
    if (signature !== null) headers['mdm-signature'] = signature
    const url = options.url ?? (headers['content-type']?.startsWith(CHECKIN_CONTENT_TYPE) ? this.checkInUrl : this.serverUrl)
    if (!url) throw new Error('no ServerURL: enroll first')
    return this.transport.request('PUT', url, { headers, body: bytes })
  }

  /** A check-in message on a channel; 200 expected. */
  private async checkin(step: StepName, message: Parameters<typeof buildCheckin>[0], channel: Channel): Promise<R> {
    const url = this.checkInUrl!
    const res = await this.guard(step, `a 200 to ${message.MessageType}`, () => this.send(buildCheckin(message), { token: this.channelToken(channel) }))
    if (res.status !== 200) throw new StepFailure(step, responseFacts(res, `200 to ${message.MessageType}`, url, checkinFix(res)))
    return res
  }

  /**
   * How a message names its channel: EnrollmentID (+ EnrollmentUserID) under user enrollment; UDID
   * (+ UserID, a Mac's user channel) under device enrollment (PROTOCOL.md section 8, Apple's check-in keys).
   */
  private channelKeys(channel: Channel): { EnrollmentID: string; EnrollmentUserID?: string } | { UDID: string; UserID?: string } {
    if (this.enrollment === 'device') return channel === 'user' ? { UDID: this.udid, UserID: this.userChannelId() } : { UDID: this.udid }
    if (channel === 'user') return { EnrollmentID: this.enrollmentId, EnrollmentUserID: this.userChannelId() }
    return { EnrollmentID: this.enrollmentId }
  }

  private userChannelId(): string {
    this.enrollmentUserId ??= randomUUID().toUpperCase()
    return this.enrollmentUserId
  }

  async authenticate(): Promise<void> {
    // Device enrollment adds the serial number; user enrollment never sends it (nor the UDID).
    const serial = this.enrollment === 'device' ? { SerialNumber: this.serialNumber } : {}
    await this.checkin('authenticate', { MessageType: 'Authenticate', Topic: this.topic!, ...this.channelKeys('device'), ...serial, ...authenticateFields(this.model) }, 'device')
  }

  async tokenUpdate(channel: Channel = 'device'): Promise<void> {
    const user = channel === 'user' ? { UserShortName: 'simulated', UserLongName: 'Simulated User' } : { AwaitingConfiguration: false }
    await this.checkin(channel === 'user' ? 'user-channel' : 'token-update', { MessageType: 'TokenUpdate', Topic: this.topic!, ...this.channelKeys(channel), Token: this.pushToken, PushMagic: this.pushMagic, ...user }, channel)
  }

  async checkOut(): Promise<void> {
    await this.checkin('checkout', { MessageType: 'CheckOut', Topic: this.topic!, ...this.channelKeys('device') }, 'device')
  }

  /**
   * One command-channel session: Idle, then the answer to each command the server hands out, until it
   * answers with an empty body. `notNow` answers every command NotNow.
   */
  async idle(channel: Channel = 'device', options: { notNow?: boolean } = {}): Promise<IdleResult> {
    const state: DeviceState = {
      model: this.model,
      enrollmentId: this.enrollmentId,
      enrollment: this.enrollment,
      udid: this.udid,
      serialNumber: this.serialNumber,
      channel,
      profiles: this.profiles,
      apps: this.apps,
      identity: this.certificate,
      noted: this.noted,
    }
    const report: ReportSender = async (fields) => {
      const body = buildCommandReport({ ...this.channelKeys(channel), ...fields } as Parameters<typeof buildCommandReport>[0])
      const res = await this.guard('commands', 'an answer to the report', () => this.send(body, { contentType: COMMAND_CONTENT_TYPE, token: this.channelToken(channel) }))
      return { res, url: this.serverUrl! }
    }
    return commandSession(report, state, options)
  }

  /** A declarative management sync (tokens, declaration-items, each new declaration, status). */
  async declarativeSync(): Promise<SyncResult> {
    const url = this.checkInUrl!
    const result = await declarativeSync(
      async (endpoint, data) => {
        const message = buildCheckin({ MessageType: 'DeclarativeManagement', ...this.channelKeys('device'), Endpoint: endpoint, ...(data ? { Data: new Uint8Array(data) } : {}) })
        const res = await this.guard('declarative-sync', `an answer to ${endpoint}`, () => this.send(message, { token: this.channelToken('device') }))
        return { res, url }
      },
      this.declarations,
      this.essoDeclarations,
    )
    this.declarations = result.held
    return result
  }

  // -------------------------------------------------------------------------------------------------

  private async postEnroll(step: StepName, url: string, token: string | undefined): Promise<R> {
    const headers: Record<string, string> = { 'content-type': 'application/pkcs7-signature', 'user-agent': `DeviceManagementClient/1.0 ${USER_AGENT}` }
    if (token) headers.authorization = `Bearer ${token}`
    const body = await this.enrollBody()
    return this.request(step, 'POST', url, { headers, body }, step === 'enroll' ? 'the profile' : 'a 401 challenge')
  }

  private async request(step: StepName, method: string, url: string, init: { headers: Record<string, string>; body?: Uint8Array | string }, expected: string): Promise<R> {
    return this.guard(step, expected, () => this.transport.request(method, url, init))
  }

  /** Network errors become the step's failure. */
  private async guard(step: StepName, expected: string, run: () => Promise<R>): Promise<R> {
    try {
      return await run()
    } catch (err) {
      if (err instanceof TransportError) throw new StepFailure(step, networkFacts(err, expected))
      throw err
    }
  }
}
