/**
 * The test suite's emulated device: a thin adapter over the device simulator (src/device), the one device
 * implementation, driven through `app.inject` (inject-transport.ts). It enrolls through the real
 * endpoints: the recorded enroll body with a signed-in user's token gets a signed profile (also checked
 * with `openssl cms -verify`); the profile's SCEP payload gets the identity certificate through GetCACaps,
 * GetCACert and PKIOperation. Then tests PUT the recorded check-in plists (this device's EnrollmentID and
 * the profile's Topic written in, byte for byte otherwise) or any body, signed with that identity by the
 * simulator (`Mdm-Signature`, SHA-1 like real devices by default) or, for independence, by
 * `openssl cms -sign`. Responses are the inject responses.
 *
 * Sign-in here is a token minted in the database (enroll.ts `signIn`): these tests are about what comes
 * after it. The whole flow with a real sign-in is test/e2e/simulator.test.ts.
 */
import { createPublicKey, randomUUID, type X509Certificate } from 'node:crypto'
import type { App } from '../../src/app.js'
import { SimulatedDevice } from '../../src/device/device.js'
import type { DigestName } from '../../src/pki/oids.js'
import { modelFamilyOfProduct } from '../../src/protocol/discovery.js'
import { buildPlist, parsePlistDict, type PlistDict, type PlistValue } from '../../src/protocol/plist.js'
import { signIn, verifyProfile } from './enroll.js'
import { fixtureText } from './fixtures.js'
import { injectTransport, type InjectedResponse } from './inject-transport.js'
import { openssl } from './openssl.js'
import type { KeyPair } from './scep.js'

/** The EnrollmentID and Topic in the recorded plists, replaced by each device's own. */
const RECORDED_ENROLLMENT_ID = 'FB833D84-50C0-41DD-99DE-F748E44FFEF5'
const RECORDED_TOPIC = 'com.apple.mgmt.External.XXXXX'

export const CHECKIN = 'application/x-apple-aspen-mdm-checkin'
export const COMMAND = 'application/x-apple-aspen-mdm'

export type Recorded = 'authenticate' | 'token-update' | 'idle'
const FIXTURES: Record<Recorded, string> = {
  authenticate: 'checkin.authenticate.ios18.plist',
  'token-update': 'checkin.token-update.ios18.plist',
  idle: 'command.idle.ios18.plist',
}

export interface SignedInUser {
  token: string
  tokenId: string
  userId: string
}

export interface PutOptions {
  contentType?: string | null
  /** The bearer token; the device's own by default, null for none (macOS device channel). */
  token?: string | null
  /** Replaces the computed Mdm-Signature (null: none). */
  signature?: string | null
  /** Who signs: this device by default. */
  signer?: { certificate: X509Certificate; privateKey: KeyPair['privateKey'] }
  digest?: DigestName
  /** Sign with the openssl command line instead of node:crypto. */
  openssl?: boolean
  headers?: Record<string, string>
}

export class Device {
  /** The simulator's device this one drives: signing and sending are its. */
  readonly sim: SimulatedDevice<InjectedResponse>

  constructor(
    readonly app: App,
    readonly keys: KeyPair,
    readonly certificate: X509Certificate,
    /** The user who signed in to enroll; `token` is what the device presents as bearer. */
    readonly user: SignedInUser,
    readonly topic: string,
    readonly path: string,
    public enrollmentId: string = randomUUID().toUpperCase(),
    public token: string | null = user.token,
    /** Authenticate's device fields (the recorded iPhone's unless changed). */
    readonly authenticateFields: Record<string, PlistValue> = {},
  ) {
    const serverUrl = new URL(path, app.config.serverUrl).toString()
    this.sim = SimulatedDevice.enrolled({ transport: injectTransport(app), keys, certificate, topic, serverUrl, token, enrollmentId, model: modelFamilyOfProduct(String(authenticateFields.ProductName ?? 'iPhone12,1')) === 'Mac' ? 'Mac' : 'iPhone' })
  }

  /** A recorded plist with this device's EnrollmentID and Topic; `changes` rebuild it (null deletes a key). */
  body(kind: Recorded, changes?: Record<string, PlistValue | null>): Buffer {
    const text = fixtureText(FIXTURES[kind]).replaceAll(RECORDED_ENROLLMENT_ID, this.enrollmentId).replaceAll(RECORDED_TOPIC, this.topic)
    if (!changes) return Buffer.from(text, 'utf8')
    const dict: PlistDict = parsePlistDict(text)
    for (const [k, v] of Object.entries(changes)) {
      if (v === null) delete dict[k]
      else dict[k] = v
    }
    return Buffer.from(buildPlist(dict), 'utf8')
  }

  /** A check-in message of any type built from scratch (the recorded ones come from `body`). */
  message(fields: Record<string, PlistValue>): Buffer {
    return Buffer.from(buildPlist({ EnrollmentID: this.enrollmentId, ...fields }), 'utf8')
  }

  /** Base64 detached CMS over exactly `body`. */
  sign(body: Uint8Array, options: Pick<PutOptions, 'signer' | 'digest' | 'openssl'> = {}): string {
    const signer = options.signer ?? { certificate: this.certificate, privateKey: this.keys.privateKey }
    if (options.openssl) return opensslSign(body, [signer]).toString('base64')
    return this.sim.sign(body, { signer, digest: options.digest ?? 'sha1' })
  }

  async put(body: Uint8Array | string, options: PutOptions = {}) {
    const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : Buffer.from(body)
    const token = options.token === undefined ? this.token : options.token
    const signature = options.signature === undefined ? this.sign(bytes, options) : options.signature
    const res = await this.sim.send(bytes, { contentType: options.contentType, token, signature, headers: options.headers, url: new URL(this.path, this.app.config.serverUrl).toString() })
    return res.inject
  }

  authenticate(options?: PutOptions) {
    const changes = Object.keys(this.authenticateFields).length ? this.authenticateFields : undefined
    return this.put(this.body('authenticate', changes), options)
  }

  tokenUpdate(options?: PutOptions, changes?: Record<string, PlistValue | null>) {
    return this.put(this.body('token-update', changes), options)
  }

  idle(options?: PutOptions, changes?: Record<string, PlistValue | null>) {
    return this.put(this.body('idle', changes), { contentType: COMMAND, ...options })
  }

  checkOut(options?: PutOptions) {
    return this.put(this.message({ MessageType: 'CheckOut', Topic: this.topic }), options)
  }
}

/** `openssl cms -sign -binary -outform DER`: detached, one SignerInfo per signer. */
export function opensslSign(body: Uint8Array, signers: { certificate: X509Certificate; privateKey: KeyPair['privateKey'] }[]): Buffer {
  const o = openssl()
  try {
    const args = ['cms', '-sign', '-binary', '-outform', 'DER', '-in', o.file('body', body)]
    signers.forEach((s, i) => {
      args.push('-signer', o.file(`signer${i}.pem`, s.certificate.toString()), '-inkey', o.file(`signer${i}.key`, s.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string))
    })
    return o.run(args)
  } finally {
    o.close()
  }
}

/** What a Mac reports in Authenticate under user enrollment (PROTOCOL.md section 8). */
export const MAC_AUTHENTICATE: Record<string, PlistValue> = {
  ProductName: 'MacBookPro18,3',
  OSVersion: '15.1',
  BuildVersion: '24B83',
  Model: 'MacBookPro18,3',
  ModelName: 'MacBook Pro',
  DeviceName: 'Alice’s MacBook Pro',
}

export interface EnrollOptions {
  user?: SignedInUser
  /** Authenticate as a Mac (the enroll body is still the recorded iPhone's: the server trusts Authenticate). */
  mac?: boolean
}

/**
 * A device enrolled through the real endpoints by the simulator: sign-in (a token minted for a new user,
 * or `user`), enroll with the recorded body at the Default team's URL, the profile's rules, SCEP.
 */
export async function enrollDevice(app: App, options: EnrollOptions = {}): Promise<Device> {
  const user = options.user ?? (await signIn(app))
  const sim = new SimulatedDevice({ transport: injectTransport(app), model: options.mac ? 'Mac' : 'iPhone' })
  sim.enrollUrl = new URL('/api/mdm/apple/enroll', app.config.serverUrl).toString()
  sim.token = user.token
  const profile = await sim.fetchProfile()
  // An independent reading of the signature too (openssl shares no code with src/pki).
  verifyProfile(app, profile)
  sim.readProfile(profile)
  await sim.scep()
  const keys = { publicKey: sim.keys!.publicKey, privateKey: sim.keys!.privateKey }
  return new Device(app, keys, sim.certificate!, user, sim.topic!, new URL(sim.serverUrl!).pathname, undefined, undefined, options.mac ? MAC_AUTHENTICATE : {})
}

/**
 * Authenticate from an identity a SCEP client obtained directly (no enrollment profile), for `user`: what
 * a device does after SCEP, so that the certificate is bound to an enrollment (a renewal needs one).
 */
export async function authenticateWith(app: App, identity: { certificate: X509Certificate; privateKey: KeyPair['privateKey'] }, user: SignedInUser): Promise<Device> {
  const keys = { privateKey: identity.privateKey, publicKey: createPublicKey(identity.privateKey) }
  const device = new Device(app, keys, identity.certificate, user, 'com.apple.mgmt.External.test-topic', new URL(app.urls.mdm).pathname)
  const res = await device.authenticate()
  if (res.statusCode !== 200) throw new Error(`Authenticate answered ${res.statusCode}: ${res.body}`)
  return device
}

/** Every row check-in may write, in full: "nothing written" means this does not change. */
export async function checkinRows(app: App) {
  const prisma = app.db.prisma
  return {
    enrollments: await prisma.mdmEnrollment.findMany({ orderBy: { id: 'asc' } }),
    certificates: await prisma.mdmEnrollmentCertificate.findMany({ orderBy: { deviceCertificateId: 'asc' } }),
    channels: await prisma.mdmChannel.findMany({ orderBy: { id: 'asc' } }),
  }
}

/** A device that has sent Authenticate and TokenUpdate. */
export async function activeDevice(app: App, options: EnrollOptions = {}): Promise<Device> {
  const device = await enrollDevice(app, options)
  // A Mac sends no token on its device channel.
  const token = options.mac ? { token: null } : undefined
  for (const res of [await device.authenticate(token), await device.tokenUpdate(token)]) {
    if (res.statusCode !== 200) throw new Error(`check-in answered ${res.statusCode}: ${res.body}`)
  }
  return device
}
