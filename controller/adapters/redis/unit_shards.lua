-- A unit's shard among its cell's small hashes (units.lua): the low 32 bits of its 8-byte
-- field (little-endian) modulo 2^level, or modulo 2^(level+1) where that falls below split.
-- Written into units.lua and read.lua alike (controller/adapters/redis/cells/unit_counts.py).
local function unit_hash(field)
  local b1, b2, b3, b4 = string.byte(field, 1, 4)
  return b1 + 256 * (b2 + 256 * (b3 + 256 * b4))
end

local function shard_of(level, split, h)
  local span = 2 ^ level
  local at = h % span
  if at < split then at = h % (2 * span) end
  return at
end
