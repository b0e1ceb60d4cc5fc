-- Apply one batch of one partition atomically, exactly once.
-- KEYS[1] partition meta hash (epoch, offset)   KEYS[2] rejects hash
-- KEYS[3] set of flags seen   KEYS[4] set of flags with new data (the engine pops it)
-- KEYS[5] the event ids counted recently: with ARGV[11] 'log', a list of one entry per batch
--         ("<when, ms> <how many> " then the ids in msgpack), which the partition's owner also
--         holds and checks a batch against before sending it; without, a sorted set
--         (score: when, in ms) this script checks the batch's ids against (a window several
--         partitions share, whose owners differ)
-- KEYS[6] a scratch key (deleted before the script returns)
-- KEYS[7..] per cell: aggregate hash, unit HLL, watched units (set), the other arm's watched units,
--           the flag's conversion names (set), the unit buckets' counts: the string of their
--           lanes' low words, the string of their high words, and the string of 64-bit lanes
--           they were kept in before (only its time to live is kept); then its units' own
--           counts (units.lua): the name its hashes are under, its heaviest units (sorted
--           set); and the flag's fingerprints of failures (failures.lua, a hash)
-- ARGV[1] epoch  ARGV[2] expected offset (-1: none stored)  ARGV[3] next offset (the expected
--         one for a batch of joins only, which no record carries)  ARGV[4] ttl
-- ARGV[5] msgpack: {rejects = {reason: count},
--                   cells = {{flag, {field: n}, {field: "float"}, {unit...}, {named...},
--                             {unit bucket lane's bit offset...}, {its n...},
--                             {watched unit...}, {copy}, learn, {field, value...},
--                             {units' fields, {requests...}, {errors...}},
--                             {failure...}}...},
--                   ids = {event id...} (the ids of the events the cells count)}
--         a cell's named conversions, first seen first: {name, conv, cv_n, "cv_sum", "cv_sq"};
--         its watched units, those of its units drawn into the sample, each as an integer's
--         text (controller/core/stats/aggregates.py), which Redis keeps as an integer set;
--         its copy, from the owner's copy of the cell (controller/adapters/redis/cells/
--         copies.py), in place of the lanes' offsets and increments and of the counters and
--         float sums: {version, the low string's length, the high string's, the low string
--         whole, the high string whole ('' where it is unchanged)}, with the hash's new values ({field, value...}, set as they are), taken only where the cell's
--         hash's 'lv' and the strings' lengths are those, else the batch is refused (-6)
--         before any write; learn: true to have the cell back, with 'lv' kept.
--         A copy's bytes are arguments of their own (Lua's msgpack reads no binary): its
--         two "bytes" are the index in ARGV of each (ARGV[17] on), 0 for none
-- ARGV[6] the watch cap: once either arm's set of watched units holds this many, neither grows
-- ARGV[7] now (ms)  ARGV[8] the id window (ms)  ARGV[9] the most ids the window holds
-- ARGV[10] the conversion names a flag keeps: a name first seen once the flag's set holds this
--          many is counted under '~other' (its conv and cv_n only), never under its own name
-- ARGV[11] 'log' (KEYS[5] is a list) or 'zset' (a sorted set; then batch.ids holds the ids)
-- ARGV[12] with 'log', the list entry of the batch's ids ('' for a batch that counted none)
-- ARGV[13] the topic's id, ARGV[14] its partition count: the identity of the log the batch was
--          read from, stored beside the offset ('' for a part not known: kept as stored)
-- ARGV[15] an OTLP topic's rejoin offset: where a restart reads the partition again for the
--          joins its records left waiting (controller/core/telemetry/rejoining.py); '' for none
-- ARGV[16] the units a cell counts one by one: a unit first seen past them is counted in the
--          cell's 'over' alone (units.lua)
-- Returns {1, next} applied, {0, stored} replay (no-op), {-1, epoch} fenced, {-2, stored} conflict,
-- {-3, why} a cell Redis would refuse, {-4, why} a partition key Redis would refuse,
-- {-5, {id...}} events counted before, within the window (the caller folds without them),
-- {-6, why} a copy not of the cell Redis holds (the caller writes it by increments instead).
-- Applied, the reply's third element is, per cell that asked to learn, {cell index, version,
-- low string, high string, {its hash, as HGETALL answers}}, flat.
--
-- Redis does not roll back a script that fails half-way, so every command
-- that could fail is checked before the first write: key types, integer
-- counters that stay exact, float sums that stay finite, and no event counted
-- twice. A refused batch writes nothing.
local MAX_COUNT = 9007199254740991  -- 2^53 - 1: beyond it Lua's doubles lose counts
local MAX_SUM = 1e300               -- far below the double limit, so a sum never turns inf
local CHUNK = 1000                  -- arguments per variadic call, below Lua's stack limit

local function kind(key)
  return redis.call('TYPE', key)['ok']
end

local function refuse_keys(wanted)
  for key, t in pairs(wanted) do
    local found = kind(key)
    if found ~= 'none' and found ~= t then
      return key .. ' holds a ' .. found .. ', not a ' .. t
    end
  end
  return nil
end

local function finite(x)
  return x ~= nil and x == x and x > -MAX_SUM and x < MAX_SUM
end

local function failed(reply)
  return type(reply) == 'table' and reply['err'] ~= nil
end

-- A set's size, or nil and why Redis would refuse to add to it.
local function set_size(key)
  local n = redis.pcall('SCARD', key)
  if failed(n) then return nil, key .. ' holds a ' .. kind(key) .. ', not a set' end
  return n
end

-- The unit buckets' counts of a cell go to its string of lanes' low words as BITFIELD INCRBY
-- operations ({'INCRBY', 'u<LANE_WIDTH>', <bit offset>, n, ...} in plan.lanes), with no
-- read and OVERFLOW WRAP: each increment is checked to be a whole count below 2^53, each
-- offset a lane's. A low word that wraps carries into the lane's high word in the cell's
-- other string (controller/adapters/redis/cells/layout.py). Returns why Redis would refuse them,
-- or nil.
local LANE_OPS = 250                -- INCRBY operations per BITFIELD call (4 arguments each)
local LANE_BITS = 0                 -- the bits of every low word: written by layout.py
local LANE_WIDTH = 0                -- the bits of one low word: written by layout.py
local HIGH_WIDTH = 0                -- the bits of one high word: written by layout.py
local LOW_TYPE, HIGH_TYPE = 'u' .. LANE_WIDTH, 'u' .. HIGH_WIDTH
local WRAP = 2 ^ LANE_WIDTH
local HIGH_BYTES = LANE_BITS / LANE_WIDTH * HIGH_WIDTH / 8
local function whole(x, most)
  return type(x) == 'number' and x >= 0 and x == math.floor(x) and x <= most
end

-- A copy's write ({version, low length, high length, low string, high string}) checked:
-- whole words within the lanes, from strings of the lengths Redis holds.
-- Returns why Redis would refuse it, why the copy is not of what Redis holds (and true), or
-- nil.
local RAW_FROM = 17                 -- the first argument that is a copy's bytes
local function raw(at)
  if at == 0 then return '' end
  if whole(at, #ARGV) and at >= RAW_FROM then return ARGV[at] end
  return nil
end

local function copy_plan(copy, strings, sizes)
  local low, high = raw(copy[4]), raw(copy[5])
  if not (whole(copy[1], MAX_COUNT) and whole(copy[2], LANE_BITS / 8)
      and whole(copy[3], HIGH_BYTES) and type(low) == 'string' and type(high) == 'string'
      and #low % 2 == 0 and #low <= LANE_BITS / 8 and #high % 4 == 0 and #high <= HIGH_BYTES)
      then
    return strings[1] .. ': not a copy of unit bucket lanes'
  end
  if sizes[1] ~= copy[2] or sizes[2] ~= copy[3] then
    return strings[1] .. ': the copy is of ' .. copy[2] .. ' and ' .. copy[3] ..
      ' bytes, Redis holds ' .. sizes[1] .. ' and ' .. sizes[2], true
  end
  return nil
end

local PER_UNIT_COUNTS = nil  -- units.lua

local FAILURE_COUNTS = nil  -- failures.lua

local function unit_plan(plan, agg, strings, offsets, adds, copy)
  if type(offsets) ~= 'table' or type(adds) ~= 'table' or #offsets ~= #adds
      or type(copy) ~= 'table' or (#copy > 0 and #offsets > 0) then
    return agg .. ': unit bucket lanes and increments do not pair'
  end
  plan.lanes = {}
  if #offsets == 0 and #copy == 0 and not plan.learn then return nil end
  local sizes = {}
  for i, key in ipairs({strings[1], strings[2]}) do  -- the third is only kept alive
    local size = redis.pcall('STRLEN', key)
    if failed(size) then return key .. ' holds a ' .. kind(key) .. ', not a string' end
    sizes[i] = size
  end
  if #copy > 0 then
    plan.copy = copy
    local why, stale = copy_plan(copy, strings, sizes)
    copy[4], copy[5] = raw(copy[4]), raw(copy[5])  -- the bytes, for the write
    return why, stale
  end
  local ops, floor, n = plan.lanes, math.floor, 0
  for i = 1, #offsets do
    local add, at = adds[i], offsets[i]
    if type(add) ~= 'number' or add < 0 or add ~= floor(add) or add > MAX_COUNT
        or type(at) ~= 'number' or at < 0 or at >= LANE_BITS or at % LANE_WIDTH ~= 0 then
      return strings[1] .. ' ' .. tostring(at) .. ': not a unit bucket count'
    end
    ops[n + 1], ops[n + 2], ops[n + 3], ops[n + 4] = 'INCRBY', LOW_TYPE, at, add
    n = n + 4
  end
  return nil
end

-- The low words' increments of a cell (plan.lanes) applied, and each wrap carried into its
-- lane's high word: a low word below what was added to it has wrapped (else it would be at
-- least that), and by (old + add - new) / 2^LANE_WIDTH times, old being (new - add) modulo
-- 2^LANE_WIDTH. Every number is a whole one below 2^53, so Lua's doubles hold it exactly.
local function add_lanes(ops, low, high)
  local carries = {}
  for i = 1, #ops, 4 * LANE_OPS do
    local last = math.min(i + 4 * LANE_OPS - 1, #ops)
    local words = redis.call('BITFIELD', low, 'OVERFLOW', 'WRAP', unpack(ops, i, last))
    for j = 1, #words do
      local at = i + 4 * (j - 1)
      local now, add = words[j], ops[at + 3]
      if now < add then
        local old = (now - add) % WRAP
        local n = #carries
        carries[n + 1], carries[n + 2] = 'INCRBY', HIGH_TYPE
        carries[n + 3] = ops[at + 2] / LANE_WIDTH * HIGH_WIDTH
        carries[n + 4] = (old + add - now) / WRAP
      end
    end
  end
  for i = 1, #carries, 4 * LANE_OPS do
    local last = math.min(i + 4 * LANE_OPS - 1, #carries)
    redis.call('BITFIELD', high, 'OVERFLOW', 'FAIL', unpack(carries, i, last))
  end
end

-- What a cell's write needs, or nil and why Redis would refuse it: its new field values
-- ({field, value, ...}, for one HSET, the watched-unit counts added to by the write), its unit
-- buckets' BITFIELD operations, whether its HyperLogLog is dense, and the sizes of its arm's and
-- the other arm's watched units. redis.pcall turns a wrong-type key into a value to test, so each
-- check is one read; and since the current values are read anyway, the sums are computed here.
local function cell_plan(agg, hll, sets, lanes, cell, sizes)
  local head = redis.pcall('GETRANGE', hll, 0, 4)
  if failed(head) or (head ~= '' and string.sub(head, 1, 4) ~= 'HYLL') then
    return nil, hll .. ' is not a HyperLogLog'
  end
  local plan = {dense = string.sub(head, 5, 5) == '\0', learn = cell[10] == true}
  local why, stale = unit_plan(plan, agg, lanes, cell[6] or {}, cell[7] or {}, cell[9] or {})
  if why then return nil, why, stale end
  local fields, adds = {}, {}
  for field, n in pairs(cell[2]) do fields[#fields + 1] = field; adds[#adds + 1] = n end
  local counters = #fields
  for field, x in pairs(cell[3]) do fields[#fields + 1] = field; adds[#adds + 1] = tonumber(x) end
  local watched = #(cell[8] or {}) > 0
  if watched then
    for _, key in ipairs(sets) do
      if sizes[key] == nil then
        local n, why_set = set_size(key)
        if n == nil then return nil, why_set end
        sizes[key] = n
      end
    end
    fields[#fields + 1], fields[#fields + 2] = 'wu', 'both'
  end
  local versioned = plan.copy ~= nil or plan.learn
  if versioned then fields[#fields + 1] = 'lv' end
  if #fields == 0 then plan.values = {}; return plan end
  local have = redis.pcall('HMGET', agg, unpack(fields))
  if failed(have) then return nil, agg .. ' is not a hash' end
  local extra = (watched and 2 or 0) + (versioned and 1 or 0)
  if watched then
    local at = #fields - extra
    plan.wu, plan.both = tonumber(have[at + 1] or '0'), tonumber(have[at + 2] or '0')
    for _, n in ipairs({plan.wu, plan.both}) do
      if n == nil or n ~= math.floor(n) or n + #cell[8] > MAX_COUNT then
        return nil, agg .. ' watched units: counter would not stay exact'
      end
    end
  end
  if versioned then
    plan.lv = tonumber(have[#fields] or '0')
    if not whole(plan.lv, MAX_COUNT - 1) then return nil, agg .. ' lv: not a version' end
    if plan.copy and plan.lv ~= plan.copy[1] then
      return nil, agg .. ': the copy is of version ' .. plan.copy[1] .. ', Redis holds ' ..
        plan.lv, true
    end
  end
  local out, floor, format = {}, math.floor, string.format
  if plan.copy then
    local values = cell[11]
    if type(values) ~= 'table' or #values % 2 ~= 0 then
      return nil, agg .. ': not a copy of its counts'
    end
    for i = 1, #values do
      if type(values[i]) ~= 'string' then return nil, agg .. ': not a copy of its counts' end
      out[i] = values[i]
    end
  end
  local base_at = #out
  for i = 1, #fields - extra do
    local base, add = 0, adds[i]
    if have[i] then base = tonumber(have[i]) end
    if i <= counters then
      if type(add) ~= 'number' or add < 0 or add ~= floor(add) or base == nil
          or base ~= floor(base) or base + add > MAX_COUNT then
        return nil, agg .. ' ' .. fields[i] .. ': counter would not stay exact'
      end
      out[base_at + 2 * i - 1], out[base_at + 2 * i] = fields[i], format('%.0f', base + add)
    elseif not (finite(add) and finite(base) and finite(base + add)) then
      return nil, agg .. ' ' .. fields[i] .. ': sum would not stay finite'
    else
      out[base_at + 2 * i - 1], out[base_at + 2 * i] = fields[i], format('%.17g', base + add)
    end
  end
  plan.values = out
  return plan
end

local meta = KEYS[1]
if kind(meta) ~= 'hash' and kind(meta) ~= 'none' then return {-4, meta .. ' is not a hash'} end
local epoch = redis.call('HGET', meta, 'epoch')
if epoch ~= ARGV[1] then return {-1, tostring(epoch)} end
local stored = tonumber(redis.call('HGET', meta, 'offset') or '-1')
local expected, nxt, ttl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if stored == nil or expected == nil or nxt == nil or ttl == nil then
  return {-4, 'offsets and ttl must be numbers'}
end
-- A batch that does not move the offset (next = expected = stored) carries only the joins a
-- restart's replay completed with a half read fresh: no record of its own, so the offset
-- cannot tell it is a replay; the id window below counts its events once.
if stored > nxt or (stored == nxt and expected ~= nxt) then return {0, tostring(stored)} end
if stored ~= expected then return {-2, tostring(stored)} end

local ok, batch = pcall(cmsgpack.unpack, ARGV[5])
if not ok or type(batch) ~= 'table' then return {-4, 'the batch is not msgpack'} end
local why = refuse_keys({[KEYS[2]] = 'hash', [KEYS[3]] = 'set', [KEYS[4]] = 'set'})
if why then return {-4, why} end
for reason, count in pairs(batch[1]) do
  local have = tonumber(redis.call('HGET', KEYS[2], reason) or '0')
  if have == nil or have + count > MAX_COUNT then
    return {-4, KEYS[2] .. ' ' .. reason .. ': counter would not stay exact'}
  end
end
-- An event id recorded within the window was counted: the whole batch is
-- refused with those ids, before any write, and comes back without them.
local ids_key, ids = KEYS[5], batch[3]
local now, window, max_ids = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
if now == nil or window == nil or max_ids == nil then
  return {-4, 'the id window must be numbers'}
end
if type(ids) ~= 'table' then return {-4, 'the batch holds no list of event ids'} end
local logged, id_entry = ARGV[11] == 'log', ARGV[12] or ''
why = refuse_keys({[ids_key] = logged and 'list' or 'zset'})
if why then return {-4, why} end
local since = now - window
local counted = {}
for i = 1, #ids, CHUNK do
  local last = math.min(i + CHUNK - 1, #ids)
  local scores = redis.call('ZMSCORE', ids_key, unpack(ids, i, last))
  for j = 1, #scores do
    if scores[j] and tonumber(scores[j]) >= since then counted[#counted + 1] = ids[i + j - 1] end
  end
end
if #counted > 0 then return {-5, counted} end

-- A named conversion is counted under its name once the flag's set of names holds it: a
-- name already there, or a new one while the set (with the names this batch adds) is below
-- the cap. Its fields go into the cell's counters and floats ({field: n}, {field: "float"});
-- a name past the cap adds its counts to '~other'. Returns the names the cell adds to the set,
-- or nil and why Redis would refuse them.
local OTHER = '~other'
local batch_names = {}
local function add_named(names_key, cell, cap_names)
  local named, fresh = cell[5], {}
  if type(named) ~= 'table' or #named == 0 then return fresh end
  local why = refuse_keys({[names_key] = 'set'})
  if why then return nil, why end
  local state = batch_names[names_key]
  if state == nil then
    state = {size = redis.call('SCARD', names_key), kept = {}}
    batch_names[names_key] = state
  end
  local counters, floats = cell[2], cell[3]
  for _, entry in ipairs(named) do
    local name = entry[1]
    local kept = state.kept[name]
    if kept == nil then
      kept = redis.call('SISMEMBER', names_key, name) == 1
      if not kept and state.size < cap_names then
        kept, state.size = true, state.size + 1
        fresh[#fresh + 1] = name
      end
      state.kept[name] = kept
    end
    local as = kept and name or OTHER
    counters['conv:' .. as] = (counters['conv:' .. as] or 0) + entry[2]
    if entry[3] > 0 then
      counters['cv_n:' .. as] = (counters['cv_n:' .. as] or 0) + entry[3]
      if kept then
        floats['cv_sum:' .. name], floats['cv_sq:' .. name] = entry[4], entry[5]
      end
    end
  end
  return fresh
end

local function watch(own, other, units, cap, ttl, sizes)
  -- Each unit new to this arm's set is added; one the other arm's set holds
  -- was seen in both arms. A set at the cap (either arm's) stops the sample.
  -- Returns how many units were added, and of these how many the other arm's set holds.
  if #units == 0 or sizes[own] >= cap or sizes[other] >= cap then return 0, 0 end
  local added, both = 0, 0
  for i = 1, #units, CHUNK do
    local last = math.min(i + CHUNK - 1, #units)
    local mine = redis.call('SMISMEMBER', own, unpack(units, i, last))
    local theirs = redis.call('SMISMEMBER', other, unpack(units, i, last))
    local fresh = {}
    for j = 1, #mine do
      if mine[j] == 0 then
        fresh[#fresh + 1] = units[i + j - 1]
        if theirs[j] == 1 then both = both + 1 end
      end
    end
    if #fresh > 0 then redis.call('SADD', own, unpack(fresh)) end
    added = added + #fresh
  end
  sizes[own] = sizes[own] + added
  redis.call('EXPIRE', own, ttl)
  return added, both
end

-- Adding to a sparse HyperLogLog scans its whole encoding per unit (Redis turns it dense only
-- past hll-sparse-max-bytes, 3,000 by default), so one that holds or is about to hold some
-- hundreds of units is made dense first (12 KB, one register write per unit): an empty one is
-- set to an empty dense one, a sparse one merged into an empty dense one.
local DENSE_SIZE, DENSE_FROM = 16 + 12288, 1500
local function dense(hll, adding)
  local size = redis.call('STRLEN', hll)
  if size + 3 * adding < DENSE_FROM then return end
  local empty = 'HYLL' .. string.rep('\0', DENSE_SIZE - 4)
  if size == 0 then
    redis.call('SET', hll, empty)
    return
  end
  redis.call('RENAME', hll, KEYS[6])
  redis.call('SET', hll, empty)
  redis.call('PFMERGE', hll, KEYS[6])
  redis.call('DEL', KEYS[6])
end

local function cell_keys(index)
  local base = 11 * index - 5
  return KEYS[1 + base], KEYS[2 + base], {KEYS[3 + base], KEYS[4 + base]}, KEYS[5 + base],
    {KEYS[6 + base], KEYS[7 + base], KEYS[8 + base]}, {KEYS[9 + base], KEYS[10 + base]},
    KEYS[11 + base]
end

local cap, cap_names, most_units = tonumber(ARGV[6]), tonumber(ARGV[10]), tonumber(ARGV[16])
if cap == nil or cap_names == nil or not whole(most_units, MAX_COUNT) then
  return {-4, 'the caps must be numbers'}
end
local fresh_names, plans, sizes = {}, {}, {}
local per_unit = {}
for index, cell in ipairs(batch[2]) do
  local agg, hll, sets, names, lanes, counts, reg = cell_keys(index)
  local why_failures = failures_plan(reg, cell[13])
  if why_failures then return {-3, why_failures} end
  local fresh, why_names = add_named(names, cell, cap_names)
  if fresh == nil then return {-3, why_names} end
  fresh_names[index] = fresh
  local plan, why_not, stale = cell_plan(agg, hll, sets, lanes, cell, sizes)
  if plan == nil then return {stale and -6 or -3, why_not} end
  plans[index] = plan
  local unit_plan_, why_units = per_unit_plan(counts[1], counts[2], cell[4], cell[12], most_units)
  if unit_plan_ == nil then return {-3, why_units} end
  per_unit[index] = unit_plan_
end

-- Nothing below can fail.
for reason, count in pairs(batch[1]) do
  redis.call('HINCRBY', KEYS[2], reason, count)
end
local flags, flag_seen, names_kept, learned = {}, {}, {}, {}
for index, cell in ipairs(batch[2]) do
  local agg, hll, sets, names, lanes, counts, reg = cell_keys(index)
  if not flag_seen[cell[1]] then flag_seen[cell[1]] = true; flags[#flags + 1] = cell[1] end
  if #fresh_names[index] > 0 then redis.call('SADD', names, unpack(fresh_names[index])) end
  if not names_kept[names] then
    -- The names live as long as the flag's newest hash, so no hash outlives the cap on them.
    redis.call('EXPIRE', names, ttl)
    names_kept[names] = true
  end
  local plan, units = plans[index], cell[4]
  local values = plan.values
  -- The watch runs cell after cell, so a unit the batch puts in both arms is seen in both.
  local added, both = watch(sets[1], sets[2], cell[8] or {}, cap, ttl, sizes)
  if added > 0 then values[#values + 1], values[#values + 2] = 'wu', plan.wu + added end
  if both > 0 then values[#values + 1], values[#values + 2] = 'both', plan.both + both end
  if plan.lv then
    values[#values + 1], values[#values + 2] = 'lv', string.format('%.0f', plan.lv + 1)
  end
  if #values > 0 then redis.call('HSET', agg, unpack(values)) end
  local ops, copy = plan.lanes, plan.copy
  if #ops > 0 then
    add_lanes(ops, lanes[1], lanes[2])
  elseif copy then
    if #copy[4] > 0 then redis.call('SETRANGE', lanes[1], 0, copy[4]) end
    if #copy[5] > 0 then redis.call('SETRANGE', lanes[2], 0, copy[5]) end
  end
  if #ops > 0 or (copy and #copy[4] > 0) then
    for _, key in ipairs(lanes) do redis.call('EXPIRE', key, ttl) end
  end
  if plan.learn then
    local n = #learned
    learned[n + 1], learned[n + 2] = index, plan.lv + 1
    learned[n + 3] = redis.call('GET', lanes[1]) or ''
    learned[n + 4] = redis.call('GET', lanes[2]) or ''
    learned[n + 5] = redis.call('HGETALL', agg)
  end
  if not plan.dense and #units > 0 then dense(hll, #units) end
  for i = 1, #units, CHUNK do
    redis.call('PFADD', hll, unpack(units, i, math.min(i + CHUNK - 1, #units)))
  end
  per_unit_write(per_unit[index], counts[1], counts[2], units, ttl, now)
  failures_write(reg, agg, cell[13], ttl)
  redis.call('EXPIRE', agg, ttl)
  redis.call('EXPIRE', hll, ttl)
end
for i = 1, #flags, CHUNK do
  redis.call('SADD', KEYS[3], unpack(flags, i, math.min(i + CHUNK - 1, #flags)))
  redis.call('SADD', KEYS[4], unpack(flags, i, math.min(i + CHUNK - 1, #flags)))
end
redis.call('EXPIRE', KEYS[2], ttl)
redis.call('EXPIRE', KEYS[3], ttl)
redis.call('EXPIRE', KEYS[4], ttl)
-- The batch's ids as one entry; then the oldest entries go, each once counted before the
-- window or once the newer ones alone hold the most ids the window keeps (the owner's copy
-- forgets alike: controller/adapters/redis/id_log.py). The count lives in the meta hash,
-- read as 0 once the list itself expired.
if logged then
  local total = 0
  if redis.call('EXISTS', ids_key) == 1 then
    total = tonumber(redis.call('HGET', meta, 'idn') or '0') or 0
  end
  if id_entry ~= '' then
    redis.call('RPUSH', ids_key, id_entry)
    total = total + (tonumber(string.match(id_entry, '^%d+ (%d+) ')) or 0)
  end
  while true do
    local head = redis.call('LINDEX', ids_key, 0)
    if not head then break end
    local at, n = string.match(head, '^(%d+) (%d+) ')
    at, n = tonumber(at), tonumber(n)
    if at ~= nil and n ~= nil and at >= since and total - n < max_ids then break end
    redis.call('LPOP', ids_key)
    total = total - (n or 0)
  end
  redis.call('HSET', meta, 'idn', total)
  redis.call('PEXPIRE', ids_key, window)
elseif #ids > 0 then
  for i = 1, #ids, CHUNK do
    local pairs_ = {}
    for j = i, math.min(i + CHUNK - 1, #ids) do
      pairs_[#pairs_ + 1] = ARGV[7]
      pairs_[#pairs_ + 1] = ids[j]
    end
    redis.call('ZADD', ids_key, unpack(pairs_))
  end
  -- The window: ids older than it, and past the most it holds the oldest, are forgotten.
  redis.call('ZREMRANGEBYSCORE', ids_key, '-inf', '(' .. string.format('%.0f', since))
  local over = redis.call('ZCARD', ids_key) - max_ids
  if over > 0 then redis.call('ZREMRANGEBYRANK', ids_key, 0, over - 1) end
  redis.call('PEXPIRE', ids_key, window)
end
redis.call('HSET', meta, 'offset', ARGV[3])
if ARGV[13] ~= nil and ARGV[13] ~= '' then redis.call('HSET', meta, 'topic_id', ARGV[13]) end
if ARGV[14] ~= nil and ARGV[14] ~= '' then redis.call('HSET', meta, 'partitions', ARGV[14]) end
if ARGV[15] ~= nil and ARGV[15] ~= '' then redis.call('HSET', meta, 'rejoin', ARGV[15]) end
return {1, ARGV[3], learned}
