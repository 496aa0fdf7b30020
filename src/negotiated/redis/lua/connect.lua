-- connect(player, connection): the player's latest connection, open; a Connected entry
-- unless it already was. Returns {position}.
local player, connection = ARGV[9], ARGV[10]
local key = B .. 'conn:' .. player
local r = redis.call('HMGET', key, 'id', 'open')
if r[1] == connection and r[2] == '1' then
  return {log_end()}
end
redis.call('HSET', key, 'id', connection, 'open', '1')
redis.call('PEXPIRE', key, CONN_TTL)
return {append('c', player)}
