/**
 * What the list queries share: keyset pages and case-insensitive equality.
 *
 * Pages run over `created_at` and `id`, newest first: a page is the rows strictly after the last row of
 * the previous one in (created_at DESC, id DESC) order, so reading page 50 costs the same as page 1 and
 * rows inserted meanwhile never shift a page (the admin API's cursors name that last row).
 */

/** The last row of the previous page. */
export interface PageAfter {
  createdAt: Date
  id: string
}

export const newestFirst = [{ createdAt: 'desc' as const }, { id: 'desc' as const }]

/** The `where` condition of the rows after `key` in `newestFirst` order; every row when undefined. */
export function after(key: PageAfter | undefined) {
  if (!key) return {}
  return { OR: [{ createdAt: { lt: key.createdAt } }, { createdAt: key.createdAt, id: { lt: key.id } }] }
}

/**
 * Equal to `value` ignoring case. Prisma turns `mode: 'insensitive'` equality into ILIKE without
 * escaping, so `_` and `%` in the value would match any character(s): they are escaped here (ILIKE's
 * escape character is the backslash).
 */
export function equalsIgnoringCase(value: string) {
  return { equals: value.replace(/[\\%_]/g, '\\$&'), mode: 'insensitive' as const }
}
