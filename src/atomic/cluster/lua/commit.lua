-- ARGV: prefix, node, epoch, match  ->  {'committed'} | {'not_forming'} | {'no_lobby'}
-- | {'gone', player} | {'lease'}. The commit point: the coordinator's lease, the match,
-- its lobby and every player's seat and node, checked and changed in one step.
local node, m = ARGV[2], ARGV[4]
if not holds(node, ARGV[3]) then return {'lease'} end
local key = P .. ':m:' .. m
local rec = redis.call('HMGET', key, 'coord', 'players', 'lobby')
if rec[1] ~= node then return {'not_forming'} end
if not rec[3] then return {'no_lobby'} end
local players = split(rec[2])
for _, p in ipairs(players) do
  local seat = redis.call('HMGET', pkey(p), 'seat', 'match', 'node')
  if seat[1] ~= 'm' or seat[2] ~= m or not live(seat[3]) then return {'gone', p} end
end
for _, p in ipairs(players) do
  redis.call('HSET', pkey(p), 'seat', 'l', 'lobby', rec[3])
  redis.call('HDEL', pkey(p), 'match')
end
redis.call('HSET', P .. ':l:' .. rec[3], 'members', rec[2])
redis.call('DEL', key)
redis.call('SREM', P .. ':nm:' .. node, m)
return {'committed'}
