-- ARGV: prefix  ->  {how many matchmaking records the store holds} (O(keys): for tests and
-- operators, never the frame)
local n = 0
for _, pattern in ipairs({':p:*', ':m:*', ':l:*', ':code:*', ':np:*', ':nm:*'}) do
  n = n + #redis.call('KEYS', P .. pattern)
end
for _, key in ipairs(redis.call('KEYS', P .. ':q:*')) do
  n = n + redis.call('ZCARD', key)
end
return {tostring(n)}
