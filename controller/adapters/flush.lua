-- Apply one batch of one partition atomically, exactly once.
-- KEYS[1] partition meta hash (epoch, offset)   KEYS[2] rejects hash
-- KEYS[3] set of flags seen   KEYS[4] set of flags with new data (the engine pops it)
-- KEYS[5..] per cell: aggregate hash, unit HLL
-- ARGV[1] epoch  ARGV[2] expected offset (-1: none stored)  ARGV[3] next offset  ARGV[4] ttl
-- ARGV[5] msgpack: {rejects = {reason: count}, cells = {{flag, {field: n}, {field: "float"}, {unit...}}...}}
-- Returns {1, next} applied, {0, stored} replay (no-op), {-1, epoch} fenced, {-2, stored} conflict.
local meta = KEYS[1]
local epoch = redis.call('HGET', meta, 'epoch')
if epoch ~= ARGV[1] then return {-1, tostring(epoch)} end
local stored = tonumber(redis.call('HGET', meta, 'offset') or '-1')
local expected, nxt, ttl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if stored >= nxt then return {0, tostring(stored)} end
if stored ~= expected then return {-2, tostring(stored)} end

local batch = cmsgpack.unpack(ARGV[5])
for reason, count in pairs(batch[1]) do
  redis.call('HINCRBY', KEYS[2], reason, count)
end
for index, cell in ipairs(batch[2]) do
  local agg, hll = KEYS[3 + 2 * index], KEYS[4 + 2 * index]
  redis.call('SADD', KEYS[3], cell[1])
  redis.call('SADD', KEYS[4], cell[1])
  for field, n in pairs(cell[2]) do redis.call('HINCRBY', agg, field, n) end
  for field, x in pairs(cell[3]) do redis.call('HINCRBYFLOAT', agg, field, x) end
  local units = cell[4]
  for i = 1, #units, 1000 do
    redis.call('PFADD', hll, unpack(units, i, math.min(i + 999, #units)))
  end
  redis.call('EXPIRE', agg, ttl)
  redis.call('EXPIRE', hll, ttl)
end
redis.call('EXPIRE', KEYS[2], ttl)
redis.call('EXPIRE', KEYS[3], ttl)
redis.call('EXPIRE', KEYS[4], ttl)
redis.call('HSET', meta, 'offset', ARGV[3])
return {1, ARGV[3]}
