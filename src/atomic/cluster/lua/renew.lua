-- ARGV: prefix, node, epoch, ttl_ms  ->  {'ok'} | {'lease'}
if not holds(ARGV[2], ARGV[3]) then return {'lease'} end
redis.call('PEXPIRE', P .. ':lease:' .. ARGV[2], ARGV[4])
return {'ok'}
