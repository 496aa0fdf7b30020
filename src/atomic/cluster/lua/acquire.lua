-- ARGV: prefix, node, ttl_ms  ->  {'ok', epoch} | {'taken'}
local node, ttl = ARGV[2], ARGV[3]
if live(node) then
  return {'taken'}
end
reap_node(node) -- an earlier life of this node left records: they are a dead node's
local epoch = counter(P .. ':epoch')
redis.call('SET', P .. ':lease:' .. node, epoch, 'PX', ttl)
redis.call('HSET', P .. ':nodes', node, epoch)
return {'ok', epoch}
