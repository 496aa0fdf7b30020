-- Shared by the negotiated store's writing scripts (post, connect, disconnect).
-- ARGV[1]: the key prefix; ARGV[2..8]: the relay's clock and the store's grid: now (us),
-- now (ms), the oldest frame kept at now, the frame duration (us), how long the log keeps
-- its entries (ms), the log's TTL (ms), a connection record's TTL (ms).
-- Every key is under the hash tag {PREFIX}: one Redis Cluster slot.
local B = '{' .. ARGV[1] .. '}:'
local NOW_US = ARGV[2]
local NOW_US_N = tonumber(ARGV[2])
local NOW_MS = tonumber(ARGV[3])
local OLDEST = tonumber(ARGV[4])
local FRAME_US = tonumber(ARGV[5])
local KEEP_MS = tonumber(ARGV[6])
local LOG_TTL = ARGV[7]
local CONN_TTL = ARGV[8]
local META = B .. 'meta'
local LOG = B .. 'log'
local FRAMES = B .. 'frames'

-- A whole number as decimal text (never in exponent form).
local function fmt(n)
  return string.format('%d', n)
end

-- Whether decimal `a` >= decimal `b` (u64 without leading zeros: exact, unlike numbers).
local function ge(a, b)
  if #a ~= #b then
    return #a > #b
  end
  return a >= b
end

-- Milliseconds until `frame` is dropped (when frame + 3 starts), at least 1.
local function frame_ttl(frame)
  local ms = math.ceil(((frame + 3) * FRAME_US - NOW_US_N) / 1000)
  if ms < 1 then
    ms = 1
  end
  return ms
end

-- Makes `key` live at least `ms` more milliseconds.
local function expire_at_least(key, ms)
  if redis.call('PTTL', key) < ms then
    redis.call('PEXPIRE', key, fmt(ms))
  end
end

-- The oldest frame kept: the highest oldest-kept frame any call saw (a dropped frame
-- stays dropped, whatever the TTLs of its keys still say).
local function advance_floor()
  local floor = tonumber(redis.call('HGET', META, 'floor') or '0')
  if OLDEST > floor then
    redis.call('HSET', META, 'floor', fmt(OLDEST))
    redis.call('PEXPIRE', META, LOG_TTL)
    redis.call('ZREMRANGEBYSCORE', FRAMES, '-inf', '(' .. fmt(OLDEST))
    floor = OLDEST
  end
  return floor
end

-- A fact's record, or nil when it is not stored (or its frame was dropped).
local function fact(id, floor)
  local key = B .. 'f:' .. id
  local r = redis.call('HMGET', key, 'k', 'a', 'fr', 'rq', 'dl', 'cl', 'an', 'ai', 'dd')
  if not r[1] then
    return nil
  end
  local frame = tonumber(r[3])
  if frame < floor then
    return nil
  end
  return {
    key = key, kind = r[1], author = r[2], frame = frame, request = r[4],
    deadline = r[5], closed = r[6], answer = r[7], answer_id = r[8], dead = r[9],
  }
end

-- The log's last id ('0-0' when empty).
local function log_end()
  local last = redis.call('XREVRANGE', LOG, '+', '-', 'COUNT', 1)
  if last[1] then
    return last[1][1]
  end
  return '0-0'
end

-- Appends an entry (type `t`, value `v`) at relay time (never before the last entry),
-- trims what is older than the log keeps (recording the newest id trimmed) and refreshes
-- the log's TTL. Returns the new entry's id.
local function append(t, v)
  local ms = NOW_MS
  local last = redis.call('XREVRANGE', LOG, '+', '-', 'COUNT', 1)
  if last[1] then
    local top = tonumber(string.match(last[1][1], '^(%d+)-'))
    if top > ms then
      ms = top
    end
  end
  local id = redis.call('XADD', LOG, fmt(ms) .. '-*', 't', t, 'v', v)
  local minid = NOW_MS - KEEP_MS
  if minid > 0 then
    local old = redis.call('XREVRANGE', LOG, '(' .. fmt(minid) .. '-0', '-', 'COUNT', 1)
    if old[1] then
      redis.call('HSET', META, 'trimmed', old[1][1])
      redis.call('XTRIM', LOG, 'MINID', fmt(minid) .. '-0')
    end
  end
  redis.call('PEXPIRE', LOG, LOG_TTL)
  redis.call('PEXPIRE', META, LOG_TTL)
  return id
end
