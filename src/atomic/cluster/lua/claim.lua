-- ARGV: prefix, node, epoch, category, player...  ->  {'claimed', match} | {'stale', player}
-- | {'lease'}. All or none: every player must be queued in the category, each once.
local node, cat = ARGV[2], ARGV[4]
if not holds(node, ARGV[3]) then return {'lease'} end
local seen = {}
for i = 5, #ARGV do
  local p = ARGV[i]
  local seat = redis.call('HMGET', pkey(p), 'seat', 'cat')
  if seen[p] or seat[1] ~= 'q' or seat[2] ~= cat then return {'stale', p} end
  seen[p] = true
end
local m = counter(P .. ':mseq')
local players = {}
for i = 5, #ARGV do
  local p = ARGV[i]
  dequeue(p)
  redis.call('HSET', pkey(p), 'seat', 'm', 'match', m)
  table.insert(players, p)
end
redis.call('HSET', P .. ':m:' .. m, 'coord', node, 'cat', cat, 'players', table.concat(players, ','))
redis.call('SADD', P .. ':nm:' .. node, m)
return {'claimed', m}
