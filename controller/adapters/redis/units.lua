-- Each unit's own counts (controller/core/stats/heaviest), written by flush.lua into every
-- cell it flushes, with the rest of the cell: exactly once with the partition's offset.
-- A cell's units' counts go to UNIT_SHARDS small hashes under the cell's unit key
-- ('<key>:<shard>'): a unit's requests under the 8 bytes of a 64-bit hash of its id (the shard
-- is the first byte's remainder), its failed requests, where it has any, under the same bytes
-- and an 'e'; so each hash stays small and Redis keeps it as a listpack. Beside them the cell's heaviest
-- units by requests: a sorted set of at most HEAVIEST_KEPT ids as the app sent them, scored
-- by their requests, and a hash of their failed requests. A unit whose new count passes the
-- set's smallest is added with it; then the set is cut back to HEAVIEST_KEPT. Every count
-- only grows, so the set always holds the units with the most requests (ties: Redis's order).
local UNIT_SHARDS = 0       -- written by controller/adapters/redis/cells/unit_counts.py
local HEAVIEST_KEPT = 0     -- written by controller/adapters/redis/cells/unit_counts.py
local FIELD_BYTES = 8

-- A cell's per-unit counts checked before any write: {blob, requests, errors} (the blob the
-- index in ARGV of the units' fields, FIELD_BYTES each, in the order of the cell's units),
-- every count a whole one (errors at most requests), every key of the right type.
-- Returns the plan, or nil and why Redis would refuse it. A cell with none returns {}.
local function per_unit_plan(key, top, failed_top, units, given)
  if type(given) == 'table' and #given == 0 then return {} end
  local bad = key .. ': not per-unit counts'
  if type(given) ~= 'table' or type(units) ~= 'table' then return nil, bad end
  local blob, requests, errors = raw(given[1]), given[2], given[3]
  if type(blob) ~= 'string' or type(requests) ~= 'table' or type(errors) ~= 'table'
      or #requests ~= #units or #errors ~= #units or #blob ~= FIELD_BYTES * #units then
    return nil, bad
  end
  local wanted = {[top] = 'zset', [failed_top] = 'hash'}
  for i = 1, #units do
    local n, e = requests[i], errors[i]
    if type(units[i]) ~= 'string' or not whole(n, MAX_COUNT) or not whole(e, n) then
      return nil, bad
    end
    if n > 0 then
      wanted[key .. ':' .. string.byte(blob, FIELD_BYTES * (i - 1) + 1) % UNIT_SHARDS] = 'hash'
    end
  end
  local why = refuse_keys(wanted)
  if why then return nil, why end
  return {blob = blob, requests = requests, errors = errors, keys = wanted}
end

-- The planned counts added, the heaviest units kept, every key written kept alive.
local function per_unit_write(plan, key, top, failed_top, units, ttl)
  local blob = plan.blob
  if blob == nil then return end
  local requests, errors, format = plan.requests, plan.errors, string.format
  local floor = -1
  if redis.call('ZCARD', top) >= HEAVIEST_KEPT then
    floor = tonumber(redis.call('ZRANGE', top, 0, 0, 'WITHSCORES')[2])
  end
  local entered = false
  for i = 1, #units do
    local n = requests[i]
    if n > 0 then
      local at = FIELD_BYTES * (i - 1)
      local field = string.sub(blob, at + 1, at + FIELD_BYTES)
      local shard = key .. ':' .. string.byte(blob, at + 1) % UNIT_SHARDS
      local total = redis.call('HINCRBY', shard, field, n)
      local failures = nil
      if errors[i] > 0 then failures = redis.call('HINCRBY', shard, field .. 'e', errors[i]) end
      if total > floor then
        if failures == nil then failures = tonumber(redis.call('HGET', shard, field .. 'e') or '0') end
        redis.call('ZADD', top, total, units[i])
        redis.call('HSET', failed_top, units[i], format('%.0f', failures))
        entered = true
      end
    end
  end
  if entered then
    local over = redis.call('ZCARD', top) - HEAVIEST_KEPT
    if over > 0 then
      local gone = redis.call('ZRANGE', top, 0, over - 1)
      redis.call('ZREMRANGEBYRANK', top, 0, over - 1)
      redis.call('HDEL', failed_top, unpack(gone))
    end
  end
  for written in pairs(plan.keys) do redis.call('EXPIRE', written, ttl) end
end
