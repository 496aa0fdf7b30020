-- read(after, max): {trimmed, exists, id, type, value, id, type, value...}: the newest id
-- trimmed off the log ('' if none), whether the log exists ('1'/'0'), then at most `max`
-- entries after `after` ('0-0': from the oldest).
local B = '{' .. ARGV[1] .. '}:'
local log = B .. 'log'
local out = {redis.call('HGET', B .. 'meta', 'trimmed') or '', '0'}
if redis.call('EXISTS', log) == 1 then
  out[2] = '1'
end
local start = '(' .. ARGV[2]
if ARGV[2] == '0-0' then
  start = '-'
end
for _, entry in ipairs(redis.call('XRANGE', log, start, '+', 'COUNT', ARGV[3])) do
  local t, v = '', ''
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 't' then
      t = fields[i + 1]
    elseif fields[i] == 'v' then
      v = fields[i + 1]
    end
  end
  out[#out + 1] = entry[1]
  out[#out + 1] = t
  out[#out + 1] = v
end
return out
