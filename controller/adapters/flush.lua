-- Apply one batch of one partition atomically, exactly once.
-- KEYS[1] partition meta hash (epoch, offset)   KEYS[2] rejects hash
-- KEYS[3] set of flags seen                      KEYS[4..] per cell: aggregate hash, unit HLL
-- ARGV: epoch, expected_offset, next_offset, ttl, n_rejects, (reason, count)*,
--       then per cell: flag, n_counters, (field, incr)*, n_floats, (field, incr)*, n_units, unit*
-- Returns {1, next} applied, {0, stored} replay (no-op), {-1, epoch} fenced, {-2, stored} conflict.
local meta = KEYS[1]
local epoch = redis.call('HGET', meta, 'epoch')
if epoch ~= ARGV[1] then return {-1, tostring(epoch)} end
local stored = tonumber(redis.call('HGET', meta, 'offset') or '-1')
local expected, nxt, ttl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if stored >= nxt then return {0, tostring(stored)} end
if stored ~= expected then return {-2, tostring(stored)} end

local i = 6
for _ = 1, tonumber(ARGV[5]) do
  redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
  i = i + 2
end
local k = 4
while i <= #ARGV do
  local agg, hll = KEYS[k], KEYS[k + 1]
  redis.call('SADD', KEYS[3], ARGV[i])
  local n = tonumber(ARGV[i + 1]); i = i + 2
  for _ = 1, n do redis.call('HINCRBY', agg, ARGV[i], ARGV[i + 1]); i = i + 2 end
  n = tonumber(ARGV[i]); i = i + 1
  for _ = 1, n do redis.call('HINCRBYFLOAT', agg, ARGV[i], ARGV[i + 1]); i = i + 2 end
  n = tonumber(ARGV[i]); i = i + 1
  local last = i + n - 1
  while i <= last do
    local j = math.min(i + 999, last)
    redis.call('PFADD', hll, unpack(ARGV, i, j))
    i = j + 1
  end
  redis.call('EXPIRE', agg, ttl)
  redis.call('EXPIRE', hll, ttl)
  k = k + 2
end
redis.call('EXPIRE', KEYS[2], ttl)
redis.call('EXPIRE', KEYS[3], ttl)
redis.call('HSET', meta, 'offset', ARGV[3])
return {1, ARGV[3]}
