// Types for the one function used from `bufferutil` (ws's native masking helper, with a JS fallback).
declare module 'bufferutil' {
  /** Writes `source` XOR the 4-byte `mask` into `output` from `offset`, for `length` bytes. */
  export function mask(source: Uint8Array, mask: Uint8Array, output: Uint8Array, offset: number, length: number): void;
  const bufferUtil: { mask: typeof mask };
  export default bufferUtil;
}
