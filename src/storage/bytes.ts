/** Prisma's Bytes fields take a Uint8Array over a plain ArrayBuffer; Node Buffers may share a pool. */
export function bytes(data: Uint8Array): Uint8Array<ArrayBuffer> {
  return new Uint8Array(data)
}
