-- Each named failure counted under its fingerprint (written into flush.lua at its mark).
--
-- A flag's fingerprints on this partition are chosen in one hash, 'reg' (the cell's keys'
-- eleventh), by their count over both arms and never by which arm has them:
--   'k:<fp>'  present while the fingerprint is kept: its failures count under it in each
--             arm's hash, one field a unit bucket ('f:<fp>.<bucket>');
--   'n:<fp>'  its failures counted so far, kept or not (for one past FAILURE_CANDIDATES
--             not kept, the least counted gives way and the new one starts at its count:
--             the space-saving counts of Metwally, Agrawal and El Abbadi, ICDT 2005);
--   't:<fp>', 'x:<fp>'  its name and an example, once kept;
--   'ever'    how many fingerprints were ever kept (at most FAILURES_EVER, so each arm's
--             hash holds fields of at most that many).
-- At most FAILURES_KEPT are kept at once, each from its first failure while there is room;
-- once full, a fingerprint counted more than the least counted kept one takes its place.
-- A failure of a fingerprint not kept when it is counted is counted in no field of its own:
-- the read finds a crash or an exception among the arm's exceptions less those named, a
-- failed request ('r' and 16 hex digits) among its errors. Beside
-- its counts, each arm's hash holds the name and example of a fingerprint it counts ('t:<fp>',
-- 'x:<fp>'), so the read takes all from the hashes it reads.
-- Each entry of a cell's failures (cell[13]): {fp, name, example, total, bucket, n, ...}.
local FAILURES_KEPT = 0             -- written by failure_counts.py
local FAILURES_EVER = 0             -- written by failure_counts.py
local FAILURE_CANDIDATES = 0        -- written by failure_counts.py
local FAILURE_BUCKETS = 0           -- written by failure_counts.py

local failure_state = {}

-- The cell's failures, checked before anything is written: nil, or why they are refused.
local function failures_plan(reg, entries)
  if entries == nil then return nil end
  if type(entries) ~= 'table' then return reg .. ': not a list of failures' end
  if #entries == 0 then return nil end
  local why = refuse_keys({[reg] = 'hash'})
  if why then return why end
  local floor = math.floor
  for _, entry in ipairs(entries) do
    if type(entry) ~= 'table' or #entry < 6 or #entry % 2 ~= 0
        or type(entry[1]) ~= 'string' or type(entry[2]) ~= 'string'
        or type(entry[3]) ~= 'string' or type(entry[4]) ~= 'number' then
      return reg .. ': not a failure entry'
    end
    local sum = 0
    for i = 5, #entry, 2 do
      local b, n = entry[i], entry[i + 1]
      if type(b) ~= 'number' or b < 0 or b >= FAILURE_BUCKETS or b ~= floor(b)
          or type(n) ~= 'number' or n < 1 or n ~= floor(n) then
        return reg .. ' ' .. entry[1] .. ': not a count by unit bucket'
      end
      sum = sum + n
    end
    if sum ~= entry[4] or sum > MAX_COUNT then return reg .. ' ' .. entry[1] .. ': bad total' end
  end
  return nil
end

local function failure_registry(reg)
  local state = failure_state[reg]
  if state ~= nil then return state end
  state = {kept = {}, counts = {}, kept_n = 0, candidates = 0, ever = 0}
  local all = redis.call('HGETALL', reg)
  for i = 1, #all, 2 do
    local field, value = all[i], all[i + 1]
    local head, fp = string.sub(field, 1, 2), string.sub(field, 3)
    if head == 'k:' then
      state.kept[fp], state.kept_n = true, state.kept_n + 1
    elseif head == 'n:' then
      state.counts[fp] = tonumber(value) or 0
    elseif field == 'ever' then
      state.ever = tonumber(value) or 0
    end
  end
  for fp in pairs(state.counts) do
    if not state.kept[fp] then state.candidates = state.candidates + 1 end
  end
  failure_state[reg] = state
  return state
end

-- The least counted of the kept (kept = true) or of the candidates, ties by fingerprint.
local function least(state, kept)
  local found, count = nil, nil
  for fp, n in pairs(state.counts) do
    if (state.kept[fp] == true) == kept
        and (count == nil or n < count or (n == count and fp < found)) then
      found, count = fp, n
    end
  end
  return found, count
end

local function failure_counted(state, reg, fp, total)
  local n = state.counts[fp]
  if n == nil and not state.kept[fp] then
    n = 0
    if state.candidates >= FAILURE_CANDIDATES then
      local gone, gone_n = least(state, false)
      if gone ~= nil then
        state.counts[gone], n = nil, gone_n
        state.candidates = state.candidates - 1
        redis.call('HDEL', reg, 'n:' .. gone)
      end
    end
    state.candidates = state.candidates + 1
  end
  n = (n or 0) + total
  state.counts[fp] = n
  redis.call('HSET', reg, 'n:' .. fp, string.format('%.0f', n))
  return n
end

local function failure_kept(state, reg, entry, n)
  local fp = entry[1]
  if state.kept[fp] or state.ever >= FAILURES_EVER then return end
  if state.kept_n >= FAILURES_KEPT then
    local low, low_n = least(state, true)
    if low == nil or n <= low_n then return end
    state.kept[low], state.kept_n = nil, state.kept_n - 1
    state.candidates = state.candidates + 1
    redis.call('HDEL', reg, 'k:' .. low)
  end
  state.kept[fp], state.kept_n = true, state.kept_n + 1
  state.candidates, state.ever = state.candidates - 1, state.ever + 1
  redis.call('HSET', reg, 'k:' .. fp, '1', 't:' .. fp, entry[2], 'x:' .. fp, entry[3],
    'ever', state.ever)
end

-- The cell's failures counted: each under its fingerprint where that is kept when it comes.
local function failures_write(reg, agg, entries, ttl)
  if entries == nil or #entries == 0 then return end
  local state = failure_registry(reg)
  for _, entry in ipairs(entries) do
    local fp = entry[1]
    local n = failure_counted(state, reg, fp, entry[4])
    -- With room, a fingerprint is kept from its first failure on; once full, one counted
    -- more than the least kept takes its place after this cell's failures of it.
    if state.kept_n < FAILURES_KEPT then failure_kept(state, reg, entry, n) end
    if state.kept[fp] then
      for i = 5, #entry, 2 do
        redis.call('HINCRBY', agg, 'f:' .. fp .. '.' .. entry[i], entry[i + 1])
      end
      redis.call('HSETNX', agg, 't:' .. fp, entry[2])
      redis.call('HSETNX', agg, 'x:' .. fp, entry[3])
    end
    failure_kept(state, reg, entry, n)
  end
  redis.call('EXPIRE', reg, ttl)
end
