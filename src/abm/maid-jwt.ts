/**
 * The token a device fetches with check-in `GetToken` for `TokenServiceType` `com.apple.maid`: Apple's
 * identity service asks for it while a Managed Apple Account signs in and checks with it that the account
 * belongs to the organisation of the MDM server that enrolled the device (Apple, "Get Token", section
 * "Support access management for Managed Apple Accounts"). A JWT (RFC 7519) with the claims Apple lists:
 *
 * - `iss`: the `server_uuid` that Get Account Detail (`GET /account`) returns;
 * - `iat`: when the server generated it (Apple uses it to limit how long the token is valid);
 * - `jti`: a unique identifier, a random UUID (Apple uses it to accept a token once);
 * - `service_type`: the request's `TokenServiceType`, which must be `com.apple.maid`;
 *
 * signed "using the server's private key that corresponds to the [...] public key certificate that's
 * registered with Apple Business or School Manager", i.e. the key of the ABM server token's certificate.
 * Apple names no algorithm; RS256 is what micromdm/nanodep (cryptoutil.NewMAIDJWT) and fleetdm/fleet
 * sign with, and the key is RSA. Header `{"alg":"RS256","typ":"JWT"}`; no `exp` (Apple does not ask for
 * one: iat bounds the validity). Written with node:crypto, no JWT library.
 */
import { randomUUID, sign, type KeyObject } from 'node:crypto'

export const MAID_SERVICE_TYPE = 'com.apple.maid'

export interface MaidClaims {
  iss: string
  iat: number
  jti: string
  service_type: typeof MAID_SERVICE_TYPE
}

const b64url = (value: Buffer | string) => Buffer.from(value).toString('base64url')

export function maidClaims(serverUuid: string, now: Date, jti: string = randomUUID()): MaidClaims {
  if (!serverUuid) throw new Error('a com.apple.maid token needs the server_uuid of the ABM MDM server')
  return { iss: serverUuid, iat: Math.floor(now.getTime() / 1000), jti, service_type: MAID_SERVICE_TYPE }
}

/** A compact JWS (RS256) over `claims`. */
export function signMaidJwt(claims: MaidClaims, privateKey: KeyObject): string {
  if (privateKey.asymmetricKeyType !== 'rsa') throw new Error('the ABM key must be RSA (RS256)')
  const input = `${b64url(JSON.stringify({ alg: 'RS256', typ: 'JWT' }))}.${b64url(JSON.stringify(claims))}`
  return `${input}.${b64url(sign('sha256', Buffer.from(input, 'ascii'), privateKey))}`
}
