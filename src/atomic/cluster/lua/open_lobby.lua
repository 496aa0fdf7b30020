-- ARGV: prefix, node, epoch, match, lobby, code  ->  {'yes'} | {'no'} | {'lease'}
local node, m, l, code = ARGV[2], ARGV[4], ARGV[5], ARGV[6]
if not holds(node, ARGV[3]) then return {'lease'} end
local key = P .. ':m:' .. m
local rec = redis.call('HMGET', key, 'coord', 'lobby')
if rec[1] ~= node or rec[2] then return {'no'} end
if redis.call('EXISTS', P .. ':l:' .. l) == 1 then return {'no'} end
if redis.call('SET', P .. ':code:' .. code, l, 'NX') == false then return {'no'} end
redis.call('HSET', P .. ':l:' .. l, 'code', code)
redis.call('HSET', key, 'lobby', l, 'code', code)
return {'yes'}
