-- disconnect(player, connection): when it is the player's latest connection and still
-- open (or none is recorded), its unanswered bids can no longer be accepted and a Departed
-- entry says so. Returns {position}.
local player, connection = ARGV[9], ARGV[10]
local key = B .. 'conn:' .. player
local r = redis.call('HMGET', key, 'id', 'open')
if r[1] and (r[1] ~= connection or r[2] ~= '1') then
  return {log_end()}
end
redis.call('HSET', key, 'id', connection, 'open', '0')
redis.call('PEXPIRE', key, CONN_TTL)
local floor = advance_floor()
for _, id in ipairs(redis.call('ZRANGEBYSCORE', B .. 'bids:' .. player, fmt(floor), '+inf')) do
  local bid = fact(id, floor)
  if bid and bid.kind == 'b' and not bid.answer then
    redis.call('HSET', bid.key, 'dd', '1')
  end
end
return {append('d', player)}
