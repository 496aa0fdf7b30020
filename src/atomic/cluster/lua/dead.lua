-- ARGV: prefix  ->  nodes with records whose lease expired
local out = {}
for _, node in ipairs(redis.call('HKEYS', P .. ':nodes')) do
  if not live(node) then table.insert(out, node) end
end
table.sort(out)
return out
