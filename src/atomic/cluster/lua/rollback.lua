-- ARGV: prefix, node, epoch, match, requeue...  ->  {'ok', requeued...} | {'lease'}
local node, m = ARGV[2], ARGV[4]
if not holds(node, ARGV[3]) then return {'lease'} end
if redis.call('HGET', P .. ':m:' .. m, 'coord') ~= node then return {'ok'} end
local requeue = {}
for i = 5, #ARGV do requeue[ARGV[i]] = true end
local out = {'ok'}
for _, p in ipairs(unwind(m, requeue)) do table.insert(out, p) end
return out
