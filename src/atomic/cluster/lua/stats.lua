-- ARGV: prefix  ->  {live nodes, matches forming, then category, tickets, ...}: the whole
-- cluster at a glance (O(categories + nodes), for the nodes' stats about once a second)
local alive, forming = 0, 0
for _, node in ipairs(redis.call('HKEYS', P .. ':nodes')) do
  if live(node) then alive = alive + 1 end
  forming = forming + redis.call('SCARD', P .. ':nm:' .. node)
end
local out = {tostring(alive), tostring(forming)}
for _, cat in ipairs(redis.call('SMEMBERS', P .. ':cats')) do
  table.insert(out, cat)
  table.insert(out, tostring(redis.call('ZCARD', qkey(cat))))
end
return out
