-- ARGV: prefix, group_size  ->  categories holding at least group_size tickets
local out = {}
for _, cat in ipairs(redis.call('SMEMBERS', P .. ':cats')) do
  if redis.call('ZCARD', qkey(cat)) >= tonumber(ARGV[2]) then table.insert(out, cat) end
end
table.sort(out)
return out
