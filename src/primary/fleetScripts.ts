// The fleet's server-side scripts (Lua, run atomically by Redis): each one rule of docs/fleet.md.
//
// Keys (PREFIX = "fairway:"), all rebuilt by the instances when lost:
//   instances            sorted set: instance name → time of its last sync (Redis clock, ms)
//   active:NAME          hash: backend id → what NAME holds there (sessions + in-flight requests),
//                        written by NAME every sync, expiring after 3 heartbeats
//   rates:NAME           string: NAME's last second (JSON: requests, errors, sessions opened and
//                        closed per second, latency buckets), written every sync, expiring as active:NAME
//   held:NAME            hash: backend id → fleet-counted sessions (WebSocket, TCP) NAME holds
//   sessions             hash: backend id → the sum of held:* over live instances
//   admin:drained        hash: backend id → 1 when drained on any instance (admin API)
//   admin:weight         hash: backend id → weight set through the admin API
//   admin:added/removed  hash: backends added (id → { pool, body }) or removed through the admin API
//   limit:ROUTE:CLIENT:r / :s   a client's request / new-session bucket of a scope: fleet route
//                        (its theoretical arrival time, ms), expiring once it is full again
// Invariant: sessions[b] = Σ held:NAME[b] over the names in `instances`; every script keeps it.

export const PREFIX = 'fairway:';

/** Subtracts hash `held` from `sessions` and deletes it (Lua helper, inlined where used). */
const DROP_HELD = `
local function dropHeld(heldKey, sessionsKey)
  local held = redis.call('HGETALL', heldKey)
  for i = 1, #held, 2 do
    if redis.call('HINCRBY', sessionsKey, held[i], -tonumber(held[i + 1])) <= 0 then redis.call('HDEL', sessionsKey, held[i]) end
  end
  redis.call('DEL', heldKey)
end
`;

/**
 * KEYS: instances, sessions. ARGV: me, dead-after ms, prefix, my rates (JSON, '' for none yet),
 * then backend id, count pairs of what this instance holds now. Records the heartbeat, the counts
 * and the rates, removes every instance silent past dead-after (its sessions leave the fleet's
 * counts), and returns [existed (1/0), sessions as a flat hash, then per live instance: name, its
 * active as a flat hash, its rates (false when it has none)].
 */
export const SYNC = `${DROP_HELD}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local me, deadAfter, prefix, rates = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local existed = redis.call('ZSCORE', KEYS[1], me) and 1 or 0
redis.call('ZADD', KEYS[1], now, me)
local activeKey = prefix .. 'active:' .. me
redis.call('DEL', activeKey)
for i = 5, #ARGV, 2 do redis.call('HSET', activeKey, ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIRE', activeKey, deadAfter)
if rates ~= '' then redis.call('SET', prefix .. 'rates:' .. me, rates, 'PX', deadAfter) end
for _, name in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - deadAfter)) do
  if name ~= me then
    dropHeld(prefix .. 'held:' .. name, KEYS[2])
    redis.call('DEL', prefix .. 'active:' .. name, prefix .. 'rates:' .. name)
    redis.call('ZREM', KEYS[1], name)
  end
end
local out = { existed, redis.call('HGETALL', KEYS[2]) }
for _, name in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  out[#out + 1] = name
  out[#out + 1] = redis.call('HGETALL', prefix .. 'active:' .. name)
  out[#out + 1] = redis.call('GET', prefix .. 'rates:' .. name)
end
return out
`;

/**
 * KEYS: sessions, held:ME, instances. ARGV: me, ring (1/0), balance factor, then backend id,
 * weight, max_conns triples in the plan's order. Takes one session on the chosen backend and
 * returns its index (0-based) in the plan; -1 when every candidate is at its max_conns over the
 * fleet; -2 when ME is not registered (reaped as dead: ME must rebuild first, or its counts would
 * be kept where no survivor removes them).
 */
export const PICK = `
if not redis.call('ZSCORE', KEYS[3], ARGV[1]) then return -2 end
table.remove(ARGV, 1)
local n = (#ARGV - 2) / 3
local counts, sum = {}, 0
for i = 1, n do
  counts[i] = tonumber(redis.call('HGET', KEYS[1], ARGV[3 * i]) or '0')
  sum = sum + counts[i]
end
local function room(i)
  local max = tonumber(ARGV[3 * i + 2])
  return max == 0 or counts[i] < max
end
local chosen = -1
local factor = tonumber(ARGV[2])
if ARGV[1] == '1' then
  local bound = math.huge
  if factor > 0 then bound = math.ceil(factor * (sum + 1) / n) end
  for i = 1, n do
    if room(i) and counts[i] < bound then chosen = i break end
  end
end
if chosen < 0 then
  local bestCount, bestWeight = 0, 1
  for i = 1, n do
    local weight = tonumber(ARGV[3 * i + 1])
    if room(i) and (chosen < 0 or counts[i] * bestWeight < bestCount * weight) then
      chosen, bestCount, bestWeight = i, counts[i], weight
    end
  end
end
if chosen < 0 then return -1 end
redis.call('HINCRBY', KEYS[1], ARGV[3 * chosen], 1)
redis.call('HINCRBY', KEYS[2], ARGV[3 * chosen], 1)
return chosen - 1
`;

/** KEYS: sessions, held:ME, instances. ARGV: me, backend id, count. Counts sessions taken without a pick; 0 when ME is not registered. */
export const TAKE = `
if not redis.call('ZSCORE', KEYS[3], ARGV[1]) then return 0 end
table.remove(ARGV, 1)
redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[2], ARGV[1], ARGV[2])
return 1
`;

/** KEYS: sessions, held:ME, instances. ARGV: me, backend id, count. Gives back at most what ME holds there. */
export const RELEASE = `
table.remove(ARGV, 1)
local held = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local count = math.min(held, tonumber(ARGV[2]))
if count <= 0 then return 0 end
if redis.call('HINCRBY', KEYS[2], ARGV[1], -count) <= 0 then redis.call('HDEL', KEYS[2], ARGV[1]) end
if redis.call('HINCRBY', KEYS[1], ARGV[1], -count) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return count
`;

/**
 * KEYS: instances, sessions, held:ME, active:ME, rates:ME. ARGV: me, register (1/0), then backend id,
 * count pairs. Replaces what ME holds with the given truth (after Redis was lost, or at start
 * under a name used before); without register, also leaves the fleet (a clean stop).
 */
export const REPLACE = `${DROP_HELD}
dropHeld(KEYS[3], KEYS[2])
for i = 3, #ARGV, 2 do
  local count = tonumber(ARGV[i + 1])
  if count > 0 then
    redis.call('HSET', KEYS[3], ARGV[i], count)
    redis.call('HINCRBY', KEYS[2], ARGV[i], count)
  end
end
-- A process that used ME before left its last second: not this one's.
redis.call('DEL', KEYS[5])
if ARGV[2] == '0' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('DEL', KEYS[4])
else
  -- Registered at once, so that a survivor removes these counts if ME dies before its next sync.
  local t = redis.call('TIME')
  redis.call('ZADD', KEYS[1], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), ARGV[1])
end
return 1
`;

/**
 * KEYS: the request bucket's key, the new-session bucket's key. ARGV: interval and tolerance (ms)
 * of each bucket, 0 for a bucket the route does not have. The rule of ClientLimits (GCRA, all or
 * nothing: a refused request takes no token) on Redis's clock, so that every instance draws from
 * one bucket per client. Returns { 'ok' } or { reason, retry-after ms }.
 */
export const LIMIT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local function advance(key, interval, tolerance)
  if interval == 0 then return nil end
  local tat = math.max(tonumber(redis.call('GET', key) or '0'), now) + interval
  if tat - now > tolerance then return nil, tat - now - tolerance end
  return tat
end
local requests, wait = advance(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
if wait then return { 'requests', tostring(wait) } end
local sessions, waitSessions = advance(KEYS[2], tonumber(ARGV[3]), tonumber(ARGV[4]))
if waitSessions then return { 'new-sessions', tostring(waitSessions) } end
if requests then redis.call('SET', KEYS[1], tostring(requests), 'PX', math.ceil(requests - now) + 1) end
if sessions then redis.call('SET', KEYS[2], tostring(sessions), 'PX', math.ceil(sessions - now) + 1) end
return { 'ok' }
`;
