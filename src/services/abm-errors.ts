/**
 * The one mapping of Apple Business Manager failures to what the administrator is told (the admin API's
 * error code and message): Apple's code and what to do about it.
 */
import { AbmApiError } from '../abm/client.js'
import { AppError, BadRequestError } from '../errors.js'

/**
 * What the administrator is told when a call to ABM fails: Apple's code and what to do. ABM not reachable
 * or failing is a 502; ABM refusing the token or the request, a 400 with Apple's code.
 */
export function abmFailure(err: unknown, doing: string): Error {
  if (err instanceof AppError) return err
  if (!(err instanceof AbmApiError)) return err as Error
  if (err.status === undefined) return new AppError(502, 'abm_unreachable', `${doing}: ${err.message}`, { expose: true, cause: err })
  const code = err.appleCode
  if (err.path === '/session' && (err.status === 401 || err.status === 400)) {
    return new BadRequestError(
      `${doing}: ABM refused the server token (${err.status}${code ? ` ${code}` : ''} at /session): it expired, was revoked, or a newer token was downloaded for this MDM server since. Download a new token in Apple Business Manager and upload it`,
      { code: 'abm_token_refused', cause: err },
    )
  }
  if (err.status === 403 && code === 'T_C_NOT_SIGNED') {
    return new BadRequestError(`${doing}: ABM answered T_C_NOT_SIGNED: an administrator must accept the latest terms and conditions in Apple Business Manager`, { code: 'abm_terms_not_accepted', cause: err })
  }
  if (err.status === 403) return new BadRequestError(`${doing}: ABM refused the request (403${code ? ` ${code}` : ''}): this server token has no access to it`, { code: 'abm_access_denied', cause: err })
  if (err.status === 401) return new AppError(502, 'abm_error', `${doing}: ABM kept refusing the session after renewing it (401${code ? ` ${code}` : ''})`, { expose: true, cause: err })
  if (err.status >= 400 && err.status < 500) {
    const known: Record<string, string> = {
      MDM_SERVICE_DISCOVERY_URL_REQUIRED: 'ABM says the service discovery URL is missing',
      MDM_SERVICE_DISCOVERY_URL_NOT_VALID: 'ABM says the service discovery URL is not valid (it must be an https URL)',
      ORG_NOT_SUPPORTED: 'ABM says this organisation does not support account-driven enrollment service discovery',
    }
    return new BadRequestError(`${doing}: ${code && known[code] ? known[code] : `ABM answered ${err.status}${code ? ` ${code}` : ''}`}`, { code: code ? `abm_${code.toLowerCase()}` : 'abm_bad_request', cause: err })
  }
  return new AppError(502, 'abm_error', `${doing}: ABM answered ${err.status}${code ? ` ${code}` : ''}`, { expose: true, cause: err })
}
