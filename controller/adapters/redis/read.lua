-- Sum the aggregates of flags' arms in one call: what a gate reads.
-- KEYS[1] the set of claimed partitions (only when ARGV[1] is not '-'), then per read, per
--         partition, per arm (treatment, control): the arm's aggregate hash of each version,
--         then its HyperLogLog of units of each version
-- ARGV[1] the partitions the caller's keys cover, ascending, comma-separated; '-' when the
--         set is not checked here (on a cluster it lives in another slot)
-- ARGV[2] partitions per read   ARGV[3] histogram buckets   ARGV[4..] each read's versions
-- Returns the claimed partitions (an array) when they are not the ones expected: the caller
-- reads again with their keys. Otherwise msgpack, per read {treatment, control}, each arm
-- {units, exp, req, err, lat_n, conv, cv_n, wu, both, {histogram}, {lat_sum...}, {cv_sum...},
-- {cv_sq...}, {named...}}: counts summed (the units are one PFCOUNT per partition, a union of
-- the versions); float sums as stored, one per partition and version that holds one, in that
-- order, so the caller adds them up in the order it always did. Each named conversion the
-- hashes count (fields conv:<name>, cv_n:<name>, cv_sum:<name>, cv_sq:<name>) is one
-- {name, conv, cv_n, {cv_sum...}, {cv_sq...}}, in the order first read. Last, the unit buckets
-- (fields u<bucket>.<kind>) summed into one flat array, bucket after bucket, each bucket's
-- kinds in the order of UNIT_KINDS; an empty array when the hashes hold none.
-- The three lines below are written by controller/adapters/redis/aggregate_reads.py
-- (UNIT_FIELDS: each unit bucket field's slot, so most fields are one table lookup).
local UNIT_SLOTS = 0
local UNIT_KINDS = {}
local UNIT_FIELDS = {}
local COUNTERS = {exp = 2, req = 3, err = 4, lat_n = 5, conv = 6, cv_n = 7, wu = 8, both = 9}
local FLOATS = {lat_sum = 11, cv_sum = 12, cv_sq = 13}
local HIST, NAMED, UNITS = 10, 14, 15
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
  return {0, 0, 0, 0, 0, 0, 0, 0, 0, hist, {}, {}, {}, {}, {}}
end

-- A unit bucket's field into the arm's flat array (made at its first such field).
local KIND_COUNT = 0
for _ in pairs(UNIT_KINDS) do KIND_COUNT = KIND_COUNT + 1 end
local function add_unit(arm, field, value)
  local bucket, kind = string.match(field, '^u(%d+)%.(%w+)$')
  local offset = kind and UNIT_KINDS[kind]
  if not offset then return false end
  local slot = tonumber(bucket) * KIND_COUNT + offset + 1
  if slot > UNIT_SLOTS then return false end
  local units = arm[UNITS]
  if #units == 0 then
    for i = 1, UNIT_SLOTS do units[i] = 0 end
  end
  units[slot] = units[slot] + value
  return true
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

local function add_row(arm, names, row)
  local hist = arm[HIST]
  for i = 1, #row, 2 do
    local name, value = row[i], tonumber(row[i + 1])
    if value == nil then return redis.error_reply('not a number: ' .. name) end
    local unit = UNIT_FIELDS[name]
    if unit then
      local units = arm[UNITS]
      if #units == 0 then
        for j = 1, UNIT_SLOTS do units[j] = 0 end
      end
      units[unit] = units[unit] + value
    else
      local slot = COUNTERS[name]
      if slot then
        arm[slot] = arm[slot] + value
      else
        slot = FLOATS[name]
        if slot then
          local sums = arm[slot]
          sums[#sums + 1] = value
        elseif not add_named(arm, names, name, value) and not add_unit(arm, name, value) then
          local bucket = tonumber(string.match(name, '^h(%d+)$'))
          if bucket and bucket < buckets then hist[bucket + 1] = hist[bucket + 1] + value end
        end
      end
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
      end
      at = at + 2 * versions
    end
  end
  out[#out + 1] = arms
end
return cmsgpack.pack(out)
