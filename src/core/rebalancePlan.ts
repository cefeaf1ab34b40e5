// The rule of active rebalancing, without I/O: how many sessions each backend sheds this round.

/**
 * Given the backends' loads (sessions, minus those already asked to close), sheds from each
 * backend above max(⌊maxSkew × average⌋, ⌈average⌉) its excess, in order, while the rate's
 * tokens last. Returns the count per backend and the tokens left.
 */
export function shedPlan(loads: number[], maxSkew: number, tokens: number): { counts: number[]; tokens: number } {
  const counts = loads.map(() => 0);
  const average = loads.reduce((a, b) => a + b, 0) / loads.length;
  if (loads.length < 2 || average < 1) return { counts, tokens };
  const bound = Math.max(Math.floor(maxSkew * average), Math.ceil(average));
  for (const [i, load] of loads.entries()) {
    const excess = load - bound;
    if (excess <= 0) continue;
    const count = Math.min(excess, Math.floor(tokens));
    if (count <= 0) break;
    counts[i] = count;
    tokens -= count;
  }
  return { counts, tokens };
}
