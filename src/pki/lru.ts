/**
 * A bounded map, least recently used first out: the caches of pure functions of bytes on the check-in
 * path (parsed certificates, verified signatures). Bounded, so a client sending new bytes only evicts.
 */
export class LruCache<K, V> {
  readonly #entries = new Map<K, V>()

  constructor(readonly size: number) {}

  get(key: K): V | undefined {
    const hit = this.#entries.get(key)
    if (hit !== undefined) {
      // Most recently used last: Map keeps insertion order.
      this.#entries.delete(key)
      this.#entries.set(key, hit)
    }
    return hit
  }

  set(key: K, value: V): void {
    this.#entries.delete(key)
    this.#entries.set(key, value)
    if (this.#entries.size > this.size) this.#entries.delete(this.#entries.keys().next().value!)
  }
}
