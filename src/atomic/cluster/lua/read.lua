-- ARGV: prefix, kind (player | match | lobby | floor), id  ->  the record's fields, {} if
-- none; floor: an id at or above every match id handed out (the clock, once flushed)
local kind, id = ARGV[2], ARGV[3]
if kind == 'coordinated' then
  return redis.call('SMEMBERS', P .. ':nm:' .. id)
elseif kind == 'floor' then
  return {redis.call('GET', P .. ':mseq') or string.format('%.0f', now_us())}
elseif kind == 'player' then
  local rec = redis.call('HMGET', pkey(id), 'node', 'seat', 'cat', 'match', 'lobby', 'at')
  if not rec[1] then return {} end
  local where = rec[3]
  if rec[2] == 'm' then where = rec[4] elseif rec[2] == 'l' then where = rec[5] end
  return {rec[1], rec[2], where or '', rec[6] or '0'}
elseif kind == 'match' then
  local rec = redis.call('HMGET', P .. ':m:' .. id, 'coord', 'cat', 'lobby', 'code', 'players')
  if not rec[1] then return {} end
  local out = {rec[1], rec[2], rec[3] or '', rec[4] or ''}
  for _, p in ipairs(split(rec[5])) do table.insert(out, p) end
  return out
else
  if redis.call('EXISTS', P .. ':l:' .. id) == 0 then return {} end
  local out = {redis.call('HGET', P .. ':l:' .. id, 'code') or ''}
  for _, p in ipairs(split(redis.call('HGET', P .. ':l:' .. id, 'members'))) do
    table.insert(out, p)
  end
  return out
end
