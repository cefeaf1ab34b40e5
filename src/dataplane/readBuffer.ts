// Every upstream socket of a thread reads into one buffer through net's `onread`: a read then
// allocates nothing and skips the stream machinery. What must outlive the read callback is copied.

// Imported: the global `Buffer` is an accessor, read through a getter at each use.
import { Buffer } from 'node:buffer';

export const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

/** `chunk` itself, or a copy when it points into READ_BUFFER (which the next read overwrites). */
export function detached(chunk: Buffer): Buffer {
  return chunk.buffer === READ_BUFFER.buffer ? Buffer.from(chunk) : chunk;
}
