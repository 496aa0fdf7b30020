-- ARGV: prefix, node, epoch  ->  {'ok'} | {'lease'}
if not holds(ARGV[2], ARGV[3]) then return {'lease'} end
redis.call('DEL', P .. ':lease:' .. ARGV[2])
reap_node(ARGV[2])
return {'ok'}
