-- ARGV: prefix, node, epoch, dead  ->  {'ok', reaped...} | {'alive'} | {'lease'}
if not holds(ARGV[2], ARGV[3]) then return {'lease'} end
local dead = ARGV[4]
if live(dead) or redis.call('HEXISTS', P .. ':nodes', dead) == 0 then return {'alive'} end
local out = {'ok'}
for _, x in ipairs(reap_node(dead)) do table.insert(out, x) end
return out
