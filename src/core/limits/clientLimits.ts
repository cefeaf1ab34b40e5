// Per-client rate limits and session counts, shared by every worker thread through one
// SharedArrayBuffer, so a client gets the same limit whichever worker takes its connection.
//
// Layout. The table is split into shards of SHARD_SLOTS slots; a key lives in the shard its hash
// names, in any free slot of it. Each shard has one lock word (Int32, 0 = free, 1 = held, taken
// with Atomics.compareExchange): every read and write of a shard's slots happens under its lock,
// so checks and updates are exact across threads. Plain reads and writes inside the critical
// section are ordered by the Atomics operations on the lock.
//
//   refused:  BigInt64[4]  requests refused, by reason (REASONS order), for metrics
//   locks:    Int32[shards]
//   slots:    SLOT_WORDS Int32 words each
//     +0 keyA, +1 keyB   two 32-bit hashes of the key; keyA = 0 marks a free slot
//     +2 sessions        concurrent sessions counted on this key, all workers
//     +3 (unused)
//     +4..5 requestTat   Float64, ms: theoretical arrival time of the request bucket (GCRA)
//     +6..7 sessionTat   Float64, ms: the same for new WebSocket sessions
//   byWorker: Int32[workers][slots]  sessions counted by each worker, so that the primary can
//             take a dead worker's sessions back out (forgetWorker).
//
// Token buckets are kept as GCRA (generic cell rate algorithm): one time per bucket. A bucket of
// `rate` per second and `burst` tokens lets `burst` requests through at once, then one every
// 1/rate seconds. A key whose buckets are full again and that holds no session can be replaced.

const SHARD_SLOTS = 32;
const SLOT_WORDS = 8;
const SLOT_BYTES = SLOT_WORDS * 4;
/** 131 072 slots: 4 MiB of slots, enough for tens of thousands of clients limited at once. */
export const DEFAULT_SLOTS = 131_072;

/** A token bucket as GCRA parameters, in ms. */
export interface Bucket {
  /** ms per token (1000 / rate). */
  interval: number;
  /** How far ahead of now the bucket may run: interval × burst. */
  tolerance: number;
}

export function bucket(ratePerSecond: number, burst: number): Bucket {
  const interval = 1000 / ratePerSecond;
  return { interval, tolerance: interval * burst };
}

export interface LimitRequest {
  requests?: Bucket;
  /** For a WebSocket upgrade: its new-session bucket and the most sessions at once (0 = none). */
  sessions?: Bucket;
  maxSessions?: number;
  /** Count one session on the key for this worker (release it with `release`). */
  countSession?: boolean;
}

export const REASONS = ['requests', 'new-sessions', 'concurrent-sessions', 'table-full'] as const;
export type LimitReason = (typeof REASONS)[number];

export type LimitVerdict = { allowed: true; slot: number } | { allowed: false; reason: LimitReason; retryAfterMs: number };

const HEADER_BYTES = 32;

export class ClientLimits {
  private readonly refused: BigInt64Array;
  private readonly locks: Int32Array;
  private readonly words: Int32Array;
  private readonly times: Float64Array;
  private readonly byWorker: Int32Array;
  private readonly shards: number;

  private constructor(
    readonly buffer: SharedArrayBuffer,
    readonly slots: number,
    readonly workers: number,
  ) {
    this.shards = slots / SHARD_SLOTS;
    const slotsAt = slotsOffset(this.shards);
    this.refused = new BigInt64Array(buffer, 0, REASONS.length);
    this.locks = new Int32Array(buffer, HEADER_BYTES, this.shards);
    this.words = new Int32Array(buffer, slotsAt, slots * SLOT_WORDS);
    this.times = new Float64Array(buffer, slotsAt, slots * (SLOT_WORDS / 2));
    this.byWorker = new Int32Array(buffer, slotsAt + slots * SLOT_BYTES, workers * slots);
  }

  static create(workers: number, slots = DEFAULT_SLOTS): ClientLimits {
    if (slots % SHARD_SLOTS !== 0) throw new Error(`slots must be a multiple of ${SHARD_SLOTS}`);
    const slotsAt = slotsOffset(slots / SHARD_SLOTS);
    return new ClientLimits(new SharedArrayBuffer(slotsAt + slots * SLOT_BYTES + workers * slots * 4), slots, workers);
  }

  static attach(buffer: SharedArrayBuffer, workers: number, slots = DEFAULT_SLOTS): ClientLimits {
    return new ClientLimits(buffer, slots, workers);
  }

  /**
   * Checks and takes what a request needs on `key`: a token from the request bucket, and for a
   * WebSocket upgrade a token from the new-session bucket and room under the session limit.
   * All or nothing: a refused request takes no token.
   */
  admit(key: string, now: number, worker: number, limit: LimitRequest): LimitVerdict {
    const verdict = this.decide(key, now, worker, limit);
    if (!verdict.allowed) this.countRefusal(verdict.reason);
    return verdict;
  }

  /** Counts a refusal decided elsewhere (the fleet's buckets in Redis). */
  countRefusal(reason: LimitReason): void {
    Atomics.add(this.refused, REASONS.indexOf(reason), 1n);
  }

  /** Requests refused so far, by reason. */
  refusals(): Record<LimitReason, bigint> {
    return Object.fromEntries(REASONS.map((reason, i) => [reason, Atomics.load(this.refused, i)])) as Record<LimitReason, bigint>;
  }

  private decide(key: string, now: number, worker: number, limit: LimitRequest): LimitVerdict {
    const keyA = hashWith(key, 0x811c9dc5) || 1;
    const keyB = hashWith(key, 0x2545f491);
    const shard = (keyB >>> 0) % this.shards;
    this.lock(shard);
    try {
      const slot = this.findOrClaim(shard, keyA, keyB, now);
      if (slot < 0) return { allowed: false, reason: 'table-full', retryAfterMs: 1000 };
      const base = slot * SLOT_WORDS;
      const { times, words } = this;
      let requestTat = 0;
      let sessionTat = 0;
      if (limit.requests) {
        requestTat = Math.max(times[slot * 4 + 2], now) + limit.requests.interval;
        if (requestTat - now > limit.requests.tolerance) {
          return { allowed: false, reason: 'requests', retryAfterMs: requestTat - now - limit.requests.tolerance };
        }
      }
      if (limit.sessions) {
        sessionTat = Math.max(times[slot * 4 + 3], now) + limit.sessions.interval;
        if (sessionTat - now > limit.sessions.tolerance) {
          return { allowed: false, reason: 'new-sessions', retryAfterMs: sessionTat - now - limit.sessions.tolerance };
        }
      }
      if (limit.maxSessions && words[base + 2] >= limit.maxSessions) {
        return { allowed: false, reason: 'concurrent-sessions', retryAfterMs: 1000 };
      }
      if (limit.requests) times[slot * 4 + 2] = requestTat;
      if (limit.sessions) times[slot * 4 + 3] = sessionTat;
      if (limit.countSession) {
        words[base + 2]++;
        this.byWorker[worker * this.slots + slot]++;
      }
      return { allowed: true, slot };
    } finally {
      this.unlock(shard);
    }
  }

  /** Ends one session counted by `admit` with countSession on `slot`. */
  release(slot: number, worker: number): void {
    const shard = Math.floor(slot / SHARD_SLOTS);
    this.lock(shard);
    const own = worker * this.slots + slot;
    if (this.byWorker[own] > 0) {
      this.byWorker[own]--;
      this.words[slot * SLOT_WORDS + 2]--;
    }
    this.unlock(shard);
  }

  /** Sessions counted on a key now (for tests and the admin API). */
  sessionsOf(key: string): number {
    const keyA = hashWith(key, 0x811c9dc5) || 1;
    const keyB = hashWith(key, 0x2545f491);
    const first = ((keyB >>> 0) % this.shards) * SHARD_SLOTS;
    for (let slot = first; slot < first + SHARD_SLOTS; slot++) {
      const base = slot * SLOT_WORDS;
      if (Atomics.load(this.words, base) === keyA && Atomics.load(this.words, base + 1) === keyB) return Atomics.load(this.words, base + 2);
    }
    return 0;
  }

  /** A worker thread died: the sessions it counted are gone with it. Returns how many. */
  forgetWorker(worker: number): number {
    let forgotten = 0;
    const row = worker * this.slots;
    for (let shard = 0; shard < this.shards; shard++) {
      const first = shard * SHARD_SLOTS;
      let any = false;
      for (let slot = first; slot < first + SHARD_SLOTS && !any; slot++) any = Atomics.load(this.byWorker, row + slot) !== 0;
      if (!any) continue;
      this.lock(shard);
      for (let slot = first; slot < first + SHARD_SLOTS; slot++) {
        const held = this.byWorker[row + slot];
        if (held === 0) continue;
        this.words[slot * SLOT_WORDS + 2] -= held;
        this.byWorker[row + slot] = 0;
        forgotten += held;
      }
      this.unlock(shard);
    }
    return forgotten;
  }

  /**
   * The slot of a key in its shard: its own, else a free one, else the one whose client is
   * quietest (buckets full again, no session), like an LRU eviction. -1 when every slot of the
   * shard holds sessions or a bucket still filling.
   */
  private findOrClaim(shard: number, keyA: number, keyB: number, now: number): number {
    const { words, times } = this;
    const first = shard * SHARD_SLOTS;
    let free = -1;
    let quietest = -1;
    let quietestAt = Infinity;
    for (let slot = first; slot < first + SHARD_SLOTS; slot++) {
      const base = slot * SLOT_WORDS;
      const a = words[base];
      if (a === keyA && words[base + 1] === keyB) return slot;
      if (a === 0) {
        if (free < 0) free = slot;
      } else if (words[base + 2] === 0) {
        const busyUntil = Math.max(times[slot * 4 + 2], times[slot * 4 + 3]);
        if (busyUntil <= now && busyUntil < quietestAt) {
          quietest = slot;
          quietestAt = busyUntil;
        }
      }
    }
    const slot = free >= 0 ? free : quietest;
    if (slot < 0) return -1;
    const base = slot * SLOT_WORDS;
    words[base] = keyA;
    words[base + 1] = keyB;
    words[base + 2] = 0;
    times[slot * 4 + 2] = 0;
    times[slot * 4 + 3] = 0;
    return slot;
  }

  private lock(shard: number): void {
    // Critical sections are a few dozen operations long: spinning is cheaper than sleeping.
    while (Atomics.compareExchange(this.locks, shard, 0, 1) !== 0);
  }

  private unlock(shard: number): void {
    Atomics.store(this.locks, shard, 0);
  }
}

function slotsOffset(shards: number): number {
  return HEADER_BYTES + Math.ceil((shards * 4) / 8) * 8;
}

/** FNV-1a with a chosen offset basis, finished with a murmur3 mix. */
function hashWith(text: string, basis: number): number {
  let h = basis;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h | 0;
}
