-- ARGV: prefix, node, epoch, player  ->  {'yes'} | {'no'} | {'lease'}
local node, p = ARGV[2], ARGV[4]
if not holds(node, ARGV[3]) then return {'lease'} end
local seat = redis.call('HMGET', pkey(p), 'node', 'seat')
if seat[1] ~= node or seat[2] ~= 'q' then return {'no'} end
dequeue(p)
forget(p)
return {'yes'}
