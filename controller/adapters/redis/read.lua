-- Sum the aggregates of flags' arms in one call: what a gate reads.
-- KEYS[1] the set of claimed partitions (only when ARGV[1] is not '-'), then per read, per
--         partition, per arm (treatment, control): the arm's aggregate hash of each version,
--         its HyperLogLog of units of each version, then its strings of unit bucket lanes of
--         each version: 64-bit lanes (the form before), low words, high words; then its
--         heaviest units (sorted set) of each version, and its unit key (units.lua)
-- ARGV[1] the partitions the caller's keys cover, ascending, comma-separated; '-' when the
--         set is not checked here (on a cluster it lives in another slot)
-- ARGV[2] partitions per read   ARGV[3] histogram buckets   ARGV[4..] each read's versions
-- Returns the claimed partitions (an array) when they are not the ones expected: the caller
-- reads again with their keys. Otherwise msgpack, per read {treatment, control}, each arm
-- {units, exp, req, err, lat_n, conv, cv_n, wu, both, {histogram}, {lat_sum...}, {cv_sum...},
-- {cv_sq...}, {named...}, {unit sums...}, {lanes...}, {heaviest...}, {failed}}: counts summed (the units are one
-- PFCOUNT per partition, a union of the versions); float sums as stored, one per partition
-- and version that holds one, in that order, so the caller adds them up in the order it
-- always did. Each named conversion the hashes count (fields conv:<name>, cv_n:<name>,
-- cv_sum:<name>, cv_sq:<name>) is one {name, conv, cv_n, {cv_sum...}, {cv_sq...}}, in the
-- order first read.
-- The failed are the failures counted under their fingerprints (failures.lua): each field
-- 'f:<fp>.<bucket>' summed, each 't:<fp>' (name) and 'x:<fp>' (example) as first read.
-- The unit sums are the buckets' float sums (fields u<bucket>.s) added up, one flat array in
-- the order of UNIT_SUMS (empty when no hash holds any). The heaviest are each cell's heaviest
-- units, {full, {unit, requests, errors, ...}, over} (add_heaviest). The lanes are each cell's strings of
-- unit bucket lanes as stored, {key, string}, every one that is not empty, in the order read
-- (the key names the form): the caller adds them up (controller/adapters/redis/cells/lanes.py),
-- which Lua did at a cost of
-- more CPU than the rest of the read (controller/adapters/redis/cells/layout.py writes the two
-- lines below).
local SUM_COUNT = 0
local UNIT_SUMS = {}
local COUNTERS = {exp = 2, req = 3, err = 4, lat_n = 5, conv = 6, cv_n = 7, wu = 8, both = 9}
local FLOATS = {lat_sum = 11, cv_sum = 12, cv_sq = 13}
local HIST, NAMED, SUMS, LANES, HEAVIEST, FAILED = 10, 14, 15, 16, 17, 18
local HEAVIEST_KEPT = 0     -- written by controller/adapters/redis/cells/unit_counts.py
local NAMED_SLOTS = {conv = 2, cv_n = 3, cv_sum = 4, cv_sq = 5}

local at = 1
if ARGV[1] ~= '-' then
  local members = redis.call('SMEMBERS', KEYS[1])
  table.sort(members, function(a, b) return tonumber(a) < tonumber(b) end)
  if table.concat(members, ',') ~= ARGV[1] then return members end
  at = 2
end
local parts, buckets = tonumber(ARGV[2]), tonumber(ARGV[3])

local function empty_arm()
  local hist = {}
  for i = 1, buckets do hist[i] = 0 end
  return {0, 0, 0, 0, 0, 0, 0, 0, 0, hist, {}, {}, {}, {}, {}, {}, {}, {}}
end

-- The arm's float sums of unit buckets, made at their first use.
local function unit_sums(arm)
  local sums = arm[SUMS]
  if #sums == 0 then
    for i = 1, SUM_COUNT do sums[i] = 0 end
  end
  return sums
end

-- A cell's string of lanes, as stored, into the arm's (none when the cell holds none).
-- Returns why not, or nil.
local function add_lanes(arm, key)
  local lanes = redis.pcall('GET', key)
  if type(lanes) == 'table' and lanes['err'] then return key .. ' is not a string' end
  if lanes and lanes ~= '' then
    local cells = arm[LANES]
    cells[#cells + 1] = {key, lanes}
  end
  return nil
end

local UNIT_SHARD_OF = nil  -- unit_shards.lua

-- A cell's heaviest units (units.lua) into the arm's: {full, {unit, requests, errors, ...},
-- over}, full when the cell keeps as many as it may (then a unit it leaves out sent it at
-- most the smallest count listed), over the requests of the units it counted past its most
-- (each of them sent it at most that many). Each member is a unit's 8 bytes then its id; its
-- failures are in its shard, found as units.lua addresses it. A cell with none adds nothing.
-- Returns why not, or nil.
local function add_heaviest(arm, top, key)
  local listed = redis.pcall('ZRANGE', top, 0, -1, 'WITHSCORES')
  if type(listed) == 'table' and listed['err'] then return top .. ' is not a sorted set' end
  if #listed == 0 then return nil end
  local state = redis.pcall('HMGET', key, 'level', 'split', 'over')
  if type(state) == 'table' and state['err'] then return key .. ' is not a hash' end
  local level, split = tonumber(state[1] or '0'), tonumber(state[2] or '0')
  local over = tonumber(state[3] or '0')
  if level == nil or split == nil or over == nil then
    return key .. ' is not a state of unit shards'
  end
  local units = {}
  for i = 1, #listed, 2 do
    local member = listed[i]
    if #member <= 8 then return top .. ' holds a member that names no unit' end
    local shard = key .. ':' .. string.format('%.0f', shard_of(level, split, unit_hash(member)))
    local failures = redis.pcall('HGET', shard, string.sub(member, 1, 8) .. 'e')
    if type(failures) == 'table' then failures = false end
    local n = #units
    units[n + 1], units[n + 2] = string.sub(member, 9), tonumber(listed[i + 1])
    units[n + 3] = tonumber(failures or '0') or 0
  end
  local cells = arm[HEAVIEST]
  cells[#cells + 1] = {#listed / 2 >= HEAVIEST_KEPT, units, over}
  return nil
end

-- A named field's value into its name's entry (``names``: the arm's entries by name).
local function add_named(arm, names, field, value)
  local at = string.find(field, ':', 1, true)
  local slot = at and NAMED_SLOTS[string.sub(field, 1, at - 1)]
  if not slot then return false end
  local name = string.sub(field, at + 1)
  local entry = names[name]
  if entry == nil then
    entry = {name, 0, 0, {}, {}}
    names[name] = entry
    arm[NAMED][#arm[NAMED] + 1] = entry
  end
  if slot <= 3 then
    entry[slot] = entry[slot] + value
  else
    local sums = entry[slot]
    sums[#sums + 1] = value
  end
  return true
end

-- A failure's field (failures.lua) into the arm's: its counts by unit bucket ('f:<fp>.<b>')
-- added up, its name ('t:<fp>') and example ('x:<fp>') as first read. False for another.
local FAILURE_FIELDS = {['f:'] = true, ['t:'] = true, ['x:'] = true}
local function add_failure(arm, name, text)
  local head = string.sub(name, 1, 2)
  if not FAILURE_FIELDS[head] then return false end
  local failed = arm[FAILED]
  if head == 'f:' then
    failed[name] = (failed[name] or 0) + (tonumber(text) or 0)
  elseif failed[name] == nil then
    failed[name] = text
  end
  return true
end

-- One numeric field's value into the arm's counts, sums, named conversions or histogram.
local function add_value(arm, names, name, value)
  local unit = UNIT_SUMS[name]
  if unit then
    local sums = unit_sums(arm)
    sums[unit] = sums[unit] + value
    return
  end
  local slot = COUNTERS[name]
  if slot then
    arm[slot] = arm[slot] + value
    return
  end
  slot = FLOATS[name]
  if slot then
    local sums = arm[slot]
    sums[#sums + 1] = value
  elseif not add_named(arm, names, name, value) then
    local bucket = tonumber(string.match(name, '^h(%d+)$'))
    local hist = arm[HIST]
    if bucket and bucket < buckets then hist[bucket + 1] = hist[bucket + 1] + value end
  end
end

local function add_row(arm, names, row)
  for i = 1, #row, 2 do
    local name, text = row[i], row[i + 1]
    if not add_failure(arm, name, text) then
      local value = tonumber(text)
      if value == nil then return redis.error_reply('not a number: ' .. name) end
      add_value(arm, names, name, value)
    end
  end
end

local out = {}
for r = 4, #ARGV do
  local versions = tonumber(ARGV[r])
  local arms, names = {empty_arm(), empty_arm()}, {{}, {}}
  for _ = 1, parts do
    for a = 1, 2 do
      local arm = arms[a]
      for v = 0, versions - 1 do
        local failed = add_row(arm, names[a], redis.call('HGETALL', KEYS[at + v]))
        if failed then return failed end
      end
      if versions > 0 then
        arm[1] = arm[1] + redis.call('PFCOUNT', unpack(KEYS, at + versions, at + 2 * versions - 1))
        for v = 2 * versions, 5 * versions - 1 do
          local why = add_lanes(arm, KEYS[at + v])
          if why then return redis.error_reply(why) end
        end
        for v = 5 * versions, 6 * versions - 1 do
          local why = add_heaviest(arm, KEYS[at + v], KEYS[at + v + versions])
          if why then return redis.error_reply(why) end
        end
      end
      at = at + 7 * versions
    end
  end
  out[#out + 1] = arms
end
return cmsgpack.pack(out)
