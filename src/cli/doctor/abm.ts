/**
 * The Apple Business Manager connection (optional): when a server token was uploaded, is it still valid?
 * An expired token stops discovery registration and Managed Apple Account tokens; the same warning as
 * the admin API's status and the server's start (services/abm.ts tokenExpiryWarning).
 */
import { tokenExpiryWarning } from '../../services/abm.js'
import type { Database } from '../../storage/database.js'
import { findAbmConnection } from '../../storage/abm.js'
import { fail, isoDate, ok, skipped, warn, type Outcome } from './result.js'

export async function checkAbm(db: Database | undefined, now: Date): Promise<Outcome> {
  if (!db) return skipped('the database cannot be read (see database)')
  const row = await findAbmConnection(db.prisma)
  if (!row) {
    return skipped('not connected (optional)', 'connect it to offer the Apple Business Manager discovery fallback and "Managed devices only": README "Apple Business Manager"')
  }
  const account = row.account as { server_name?: unknown } | null
  const name = typeof account?.server_name === 'string' ? ` (MDM server "${account.server_name}")` : ''
  const warning = tokenExpiryWarning(row.tokenExpiresAt, now)
  if (warning) return row.tokenExpiresAt.getTime() <= now.getTime() ? fail(warning) : warn(warning)
  const discovery = row.discoveryUrl ? `, service discovery registered as ${row.discoveryUrl}` : ', no service discovery URL registered'
  return ok(`connected${name}, server token valid until ${isoDate(row.tokenExpiresAt)}${discovery}`)
}
