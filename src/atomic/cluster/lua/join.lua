-- ARGV: prefix, node, epoch, player, category, capacity, max_categories, seniority ('' for
-- a new wait)  ->  {'queued', at} | {'already'} | {'held', node} | {'full'} | {'categories'}
-- | {'lease'}
local node, p, cat = ARGV[2], ARGV[4], ARGV[5]
if not holds(node, ARGV[3]) then return {'lease'} end
local holder = redis.call('HGET', pkey(p), 'node')
if holder == node then return {'already'} end
if holder then return {'held', holder} end
local len = redis.call('ZCARD', qkey(cat))
if len >= tonumber(ARGV[6]) then return {'full'} end
if len == 0 and redis.call('SCARD', P .. ':cats') >= tonumber(ARGV[7]) then
  return {'categories'}
end
local at = tonumber(ARGV[8])
if not at then at = stamp() end
redis.call('HSET', pkey(p), 'node', node, 'at', string.format('%.0f', at))
redis.call('SADD', P .. ':np:' .. node, p)
enqueue(p, cat, 1)
return {'queued', string.format('%.0f', at)}
