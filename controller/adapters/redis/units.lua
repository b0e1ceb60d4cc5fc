-- Each unit's own counts (controller/core/stats/heaviest), written by flush.lua into every
-- cell it flushes, with the rest of the cell: exactly once with the partition's offset.
--
-- A cell's units' counts live in small hashes under the cell's unit key ('<key>:<shard>'):
-- a unit's requests under the 8 bytes of a 64-bit hash of its id, its failed requests, where
-- it has any, under the same bytes and an 'e'. The hashes grow in number with the cell's
-- units by linear hashing (Litwin, VLDB 1980), so each holds about SHARD_LOAD units and Redis
-- keeps it as a listpack, whether the cell has forty units or four hundred thousand: the unit
-- key itself is a hash of the state (level, split: the next shard to split; units: how many
-- the cell has counted). A unit's shard is its hash's low 32 bits modulo 2^level, or modulo
-- 2^(level+1) where that falls below split. Once the cell holds more than SHARD_LOAD units a
-- shard, shard 'split' moves the units whose next bit is set to shard split + 2^level.
--
-- A cell counts at most 'most' units (the flush's ARGV[16]): a unit first seen once it holds
-- them is never written, so a cell's hashes stop growing there. Its requests and failed
-- requests are added to the unit key's 'over' and 'over_e' instead: a read takes 'over' as
-- the most such a unit may have sent (read.lua).
--
-- Beside them the cell's heaviest units by requests: a sorted set of at most HEAVIEST_KEPT
-- members, each a unit's 8 bytes then its id as the app sent it, scored by its requests (a
-- read finds its failures in its shard by the 8 bytes: read.lua). The units whose new
-- counts pass the set's smallest (as the flush began) are added with them in one ZADD at the
-- end of the cell's flush, at most HEAVIEST_KEPT of them (list_heaviest), and the set cut
-- back to HEAVIEST_KEPT. A unit appears once in a cell's flush and a cut drops the lowest
-- ranks, so this leaves the set adding them one by one would. Every count only grows, so the
-- set always holds the units with the most requests (ties: Redis's order, by member).
local SHARD_LOAD = 0        -- written by controller/adapters/redis/cells/unit_counts.py
local HEAVIEST_KEPT = 0     -- written by controller/adapters/redis/cells/unit_counts.py
local FIELD_BYTES = 8

local UNIT_SHARD_OF = nil  -- unit_shards.lua

-- A cell's per-unit counts checked before any write: {blob, requests, errors} (the blob the
-- index in ARGV of the units' fields, FIELD_BYTES each, in the order of the cell's units),
-- every count a whole one (errors at most requests), the unit key and the heaviest units of
-- the right type. The shards are not checked one by one (a check a unit
-- would cost as much as its count): only this script writes them, and a shard some other
-- client turned into another type is made again (per_unit_write). 'most': the units the
-- cell may count. Returns the plan, or nil and why Redis would refuse it. A cell that
-- counted no request returns {}.
local function per_unit_plan(key, top, units, given, most)
  if type(given) == 'table' and #given == 0 then return {} end
  local bad = key .. ': not per-unit counts'
  if type(given) ~= 'table' or type(units) ~= 'table' then return nil, bad end
  local blob, requests, errors = raw(given[1]), given[2], given[3]
  if type(blob) ~= 'string' or type(requests) ~= 'table' or type(errors) ~= 'table'
      or #requests ~= #units or #errors ~= #units or #blob ~= FIELD_BYTES * #units then
    return nil, bad
  end
  local got = redis.pcall('HMGET', key, 'level', 'split', 'units', 'kept', 'remade', 'over',
    'over_e')
  if failed(got) then return nil, key .. ' holds a ' .. kind(key) .. ', not a hash' end
  local listed = redis.pcall('ZCARD', top)
  if failed(listed) then return nil, top .. ' holds a ' .. kind(top) .. ', not a zset' end
  local state = {level = tonumber(got[1] or '0'), split = tonumber(got[2] or '0'),
                 units = tonumber(got[3] or '0'), kept = tonumber(got[4] or '0'),
                 remade = tonumber(got[5] or '0'), over = tonumber(got[6] or '0'),
                 over_e = tonumber(got[7] or '0'), fresh = got[1] == false}
  if not (whole(state.level, 31) and whole(state.split, 2 ^ state.level - 1)
      and whole(state.units, MAX_COUNT) and state.kept ~= nil and state.remade ~= nil
      and whole(state.over, MAX_COUNT) and whole(state.over_e, state.over)) then
    return nil, key .. ': not a state of unit shards'
  end
  local sent = state.over
  for i = 1, #units do
    local n, e = requests[i], errors[i]
    if type(units[i]) ~= 'string' or not whole(n, MAX_COUNT) or not whole(e, n) then
      return nil, bad
    end
    sent = sent + n
  end
  if sent > MAX_COUNT then return nil, key .. ': over would not stay exact' end
  return {blob = blob, requests = requests, errors = errors, state = state, most = most,
          listed = listed}
end

-- A shard as it is made: with a field that no unit's is, so it exists, with its time to live,
-- from the moment it is addressed (a shard gains its time to live there, not at every write).
local HOLDER = '-'
local function made(shard, ttl)
  redis.call('HSET', shard, HOLDER, 0)
  redis.call('EXPIRE', shard, ttl)
end

-- HINCRBY on a shard; a shard some other client made another type is made again, and counted.
local function increment(shard, field, n, state, ttl)
  local total = redis.pcall('HINCRBY', shard, field, n)
  if type(total) == 'table' and total['err'] then
    redis.call('DEL', shard)
    made(shard, ttl)
    state.remade = state.remade + 1
    total = redis.call('HINCRBY', shard, field, n)
  end
  return total
end

-- Whether the shard holds the field (a shard of another type holds none).
local function holds(shard, field)
  return redis.pcall('HEXISTS', shard, field) == 1
end

-- Shard 'split' split in two: its units whose next bit is set move to split + 2^level.
local function split_shard(key, state, ttl)
  local span = 2 ^ state.level
  local from = key .. ':' .. string.format('%.0f', state.split)
  local to = key .. ':' .. string.format('%.0f', state.split + span)
  local entries = redis.pcall('HGETALL', from)
  if type(entries) == 'table' and entries['err'] then entries = {} end
  local moved, gone = {}, {}
  for i = 1, #entries, 2 do
    local field = entries[i]
    if #field >= FIELD_BYTES and unit_hash(field) % (2 * span) ~= state.split then
      moved[#moved + 1], moved[#moved + 2] = field, entries[i + 1]
      gone[#gone + 1] = field
    end
  end
  redis.call('DEL', to)
  made(to, ttl)
  if #gone > 0 then
    redis.call('HSET', to, unpack(moved))
    redis.call('HDEL', from, unpack(gone))
  end
  state.split = state.split + 1
  if state.split == span then state.level, state.split = state.level + 1, 0 end
  return to
end

-- Whether heaviest-set member a ranks above member b, as Redis ranks a sorted set: by score,
-- then by the member's bytes (compared here byte by byte: Lua's '<' on strings follows the
-- server's collation locale).
local function ranks_above(a, b)
  if a[1] ~= b[1] then return a[1] > b[1] end
  local x, y = a[2], b[2]
  for at = 1, math.min(#x, #y) do
    local p, q = string.byte(x, at), string.byte(y, at)
    if p ~= q then return p > q end
  end
  return #x > #y
end

-- The units whose counts passed the set's smallest added in one ZADD: at most HEAVIEST_KEPT
-- of them, the highest ranked (any other would be cut below those), so the set never holds
-- more than 2 * HEAVIEST_KEPT members (128 at 64: past the most Redis keeps as a listpack by
-- default, a sorted set becomes a skiplist for good), then cut back to HEAVIEST_KEPT. The
-- set is the one adding them one by one would leave. Returns how many it holds.
local function list_heaviest(top, entering, listed)
  if #entering == 0 then return listed end
  if #entering > HEAVIEST_KEPT then
    table.sort(entering, ranks_above)
  end
  local args, n = {}, 0
  for i = 1, math.min(#entering, HEAVIEST_KEPT) do
    args[n + 1], args[n + 2] = entering[i][1], entering[i][2]
    n = n + 2
  end
  listed = listed + redis.call('ZADD', top, unpack(args))
  if listed > HEAVIEST_KEPT then
    redis.call('ZREMRANGEBYRANK', top, 0, listed - HEAVIEST_KEPT - 1)
    listed = HEAVIEST_KEPT
  end
  return listed
end

-- The planned counts added, the shards split as the cell grew, the heaviest units kept, and
-- every key kept alive as long as the cell's aggregates: a shard gets its time to live when
-- it is made (the cell's first, or a split's), and all of them again once an eighth of it
-- has passed since the last time ('kept', in ms), rather than each shard on every write.
-- Once the cell holds plan.most units, a unit its shard does not hold goes to 'over'.
local function per_unit_write(plan, key, top, units, ttl, now)
  local blob, state, most = plan.blob, plan.state, plan.most
  if blob == nil then return end
  local requests, errors, format, sub = plan.requests, plan.errors, string.format, string.sub
  local floor, listed = -1, plan.listed
  if listed >= HEAVIEST_KEPT then
    floor = tonumber(redis.call('ZRANGE', top, 0, 0, 'WITHSCORES')[2])
  end
  if state.fresh then made(key .. ':0', ttl) end
  local names, entering = {}, {}
  for i = 1, #units do
    local n = requests[i]
    if n > 0 then
      local at = FIELD_BYTES * (i - 1)
      local field = sub(blob, at + 1, at + FIELD_BYTES)
      local index = shard_of(state.level, state.split, unit_hash(field))
      local shard = names[index]
      if shard == nil then
        shard = key .. ':' .. format('%.0f', index)
        names[index] = shard
      end
      if state.units >= most and not holds(shard, field) then
        state.over, state.over_e = state.over + n, state.over_e + errors[i]
      else
        local total = increment(shard, field, n, state, ttl)
        if errors[i] > 0 then increment(shard, field .. 'e', errors[i], state, ttl) end
        if total > floor then
          entering[#entering + 1] = {total, field .. units[i]}
        end
        if total == n then  -- a unit new to the cell: the shards grow with the units
          state.units = state.units + 1
          if state.units > SHARD_LOAD * (2 ^ state.level + state.split) then
            split_shard(key, state, ttl)
            names = {}
          end
        end
      end
    end
  end
  listed = list_heaviest(top, entering, listed)
  redis.call('HSET', key, 'level', state.level, 'split', state.split,
    'units', format('%.0f', state.units), 'kept', format('%.0f', state.kept),
    'remade', format('%.0f', state.remade))
  if state.over > 0 then
    redis.call('HSET', key, 'over', format('%.0f', state.over),
      'over_e', format('%.0f', state.over_e))
  end
  if now - state.kept > ttl * 125 then  -- ms: an eighth of the time to live
    redis.call('HSET', key, 'kept', format('%.0f', now))
    for at = 0, 2 ^ state.level + state.split - 1 do
      redis.call('EXPIRE', key .. ':' .. format('%.0f', at), ttl)
    end
    for _, alive in ipairs({key, top}) do redis.call('EXPIRE', alive, ttl) end
  elseif state.fresh then
    for _, alive in ipairs({key, top}) do redis.call('EXPIRE', alive, ttl) end
  elseif plan.listed == 0 and listed > 0 then  -- the set made again, its time to live gone
    redis.call('EXPIRE', top, ttl)
  end
end
