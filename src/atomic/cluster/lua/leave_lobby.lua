-- ARGV: prefix, node, epoch, lobby, player  ->  {'yes'} | {'no'} | {'lease'}
local node, l, p = ARGV[2], ARGV[4], ARGV[5]
if not holds(node, ARGV[3]) then return {'lease'} end
local seat = redis.call('HMGET', pkey(p), 'node', 'seat', 'lobby')
if seat[1] ~= node or seat[2] ~= 'l' or seat[3] ~= l then return {'no'} end
forget(p)
drop_member(l, p)
return {'yes'}
