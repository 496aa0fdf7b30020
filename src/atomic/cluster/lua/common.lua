-- Shared by every script of AtomicRedisStore. ARGV[1] is the key prefix.
-- Records (P = prefix):
--   P:lease:<node>  the node's fencing epoch, expiring with its lease
--   P:nodes         hash node -> epoch of every node with records
--   P:np:<node>     set of the node's players;  P:nm:<node> set of matches it coordinates
--   P:p:<player>    hash node, seat (q | m | l), cat, match, lobby, at (enqueue time, us)
--   P:q:{<cat>}     sorted set of the category's tickets, score class * 2^51 + at
--   P:cats          set of categories with tickets
--   P:m:<id>        hash coord, cat, players (comma-separated), lobby, code
--   P:l:<id>        hash code, members (comma-separated);  P:code:<code> the lobby id
--   P:epoch, P:mseq, P:stamp  counters, seeded from the clock so a flushed store never
--                   hands out an epoch or a match id it handed out before
local P = ARGV[1]
local CLASS = 2251799813685248 -- 2^51

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function counter(key)
  if redis.call('EXISTS', key) == 0 then
    redis.call('SET', key, string.format('%.0f', now_us()))
  end
  return string.format('%.0f', redis.call('INCR', key))
end

local function stamp()
  local last = tonumber(redis.call('GET', P .. ':stamp') or '0')
  local at = math.max(now_us(), last + 1)
  redis.call('SET', P .. ':stamp', string.format('%.0f', at))
  return at
end

local function live(node)
  return redis.call('EXISTS', P .. ':lease:' .. node) == 1
end

local function holds(node, epoch)
  return redis.call('GET', P .. ':lease:' .. node) == epoch
end

local function split(list)
  local out = {}
  if list then
    for item in string.gmatch(list, '[^,]+') do
      table.insert(out, item)
    end
  end
  return out
end

local function qkey(cat)
  return P .. ':q:{' .. cat .. '}'
end

local function pkey(p)
  return P .. ':p:' .. p
end

local function dequeue(p)
  local cat = redis.call('HGET', pkey(p), 'cat')
  if cat then
    redis.call('ZREM', qkey(cat), p)
    if redis.call('ZCARD', qkey(cat)) == 0 then
      redis.call('SREM', P .. ':cats', cat)
    end
  end
end

local function enqueue(p, cat, class)
  local at = tonumber(redis.call('HGET', pkey(p), 'at'))
  redis.call('ZADD', qkey(cat), class * CLASS + at, p)
  redis.call('HSET', pkey(p), 'seat', 'q', 'cat', cat)
  redis.call('HDEL', pkey(p), 'match', 'lobby')
  redis.call('SADD', P .. ':cats', cat)
end

local function forget(p)
  local node = redis.call('HGET', pkey(p), 'node')
  if node then
    redis.call('SREM', P .. ':np:' .. node, p)
  end
  redis.call('DEL', pkey(p))
end

local function close_lobby(l)
  local code = redis.call('HGET', P .. ':l:' .. l, 'code')
  if code then
    redis.call('DEL', P .. ':code:' .. code)
  end
  redis.call('DEL', P .. ':l:' .. l)
end

local function drop_member(l, p)
  local key = P .. ':l:' .. l
  local kept = {}
  for _, member in ipairs(split(redis.call('HGET', key, 'members'))) do
    if member ~= p then
      table.insert(kept, member)
    end
  end
  if #kept == 0 then
    close_lobby(l)
  else
    redis.call('HSET', key, 'members', table.concat(kept, ','))
  end
end

-- Resolves a match: re-queues the players in `requeue` (a set) whose node is alive, in
-- front, and forgets the others; deletes its lobby. Returns the players re-queued.
local function unwind(m, requeue)
  local key = P .. ':m:' .. m
  if redis.call('EXISTS', key) == 0 then
    return {}
  end
  local rec = redis.call('HMGET', key, 'coord', 'cat', 'players', 'lobby')
  if rec[4] then
    close_lobby(rec[4])
  end
  local requeued = {}
  for _, p in ipairs(split(rec[3])) do
    local seat = redis.call('HMGET', pkey(p), 'seat', 'match', 'node')
    if seat[1] == 'm' and seat[2] == m then
      if requeue[p] and live(seat[3]) then
        enqueue(p, rec[2], 0)
        requeue[p] = nil
        table.insert(requeued, p)
      else
        forget(p)
      end
    end
  end
  redis.call('DEL', key)
  redis.call('SREM', P .. ':nm:' .. rec[1], m)
  return requeued
end

-- Reaps a node's records: {tickets removed, lobby seats left, rolled back..., '|',
-- requeued player, its node, ...}.
local function reap_node(dead)
  local removed, left = 0, 0
  for _, p in ipairs(redis.call('SMEMBERS', P .. ':np:' .. dead)) do
    local seat = redis.call('HMGET', pkey(p), 'seat', 'lobby')
    if seat[1] == 'q' then
      dequeue(p)
      removed = removed + 1
    elseif seat[1] == 'l' then
      drop_member(seat[2], p)
      left = left + 1
    end
    redis.call('DEL', pkey(p))
  end
  redis.call('DEL', P .. ':np:' .. dead)
  local rolled, requeued = {}, {}
  local matches = redis.call('SMEMBERS', P .. ':nm:' .. dead)
  table.sort(matches, function(a, b) return tonumber(a) < tonumber(b) end)
  for _, m in ipairs(matches) do
    local all = {}
    for _, p in ipairs(split(redis.call('HGET', P .. ':m:' .. m, 'players'))) do
      all[p] = true
    end
    for _, p in ipairs(unwind(m, all)) do
      table.insert(requeued, p)
      table.insert(requeued, redis.call('HGET', pkey(p), 'node'))
    end
    table.insert(rolled, m)
  end
  redis.call('DEL', P .. ':nm:' .. dead)
  redis.call('HDEL', P .. ':nodes', dead)
  local out = {tostring(removed), tostring(left)}
  for _, m in ipairs(rolled) do table.insert(out, m) end
  table.insert(out, '|')
  for _, x in ipairs(requeued) do table.insert(out, x) end
  return out
end
