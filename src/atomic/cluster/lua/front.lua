-- ARGV: prefix, category, count  ->  {player, at, node, ...} front first
local out = {}
for _, p in ipairs(redis.call('ZRANGE', qkey(ARGV[2]), 0, tonumber(ARGV[3]) - 1)) do
  local rec = redis.call('HMGET', pkey(p), 'at', 'node')
  table.insert(out, p)
  table.insert(out, rec[1] or '0')
  table.insert(out, rec[2] or '')
end
return out
