-- post(id, kind, author, frame, request, bid, deadline, max facts, max per frame, pre,
-- bytes): the relay's storage rules in their order (relay_core's `check`, first writer
-- wins), then the fact stored with its effects and appended to the log.
-- kind: r request, b bid, a accept, j reject, c cancel, w withdrawal. pre = '1': the
-- caller already refused it (a request out of the relay's frames): only a duplicate of
-- a stored fact is told.
-- Returns {'ok', position} | {'dup', end} | {'pre', end} | {'no', code, end[, winner]}.
local ID, KIND, AUTHOR = ARGV[9], ARGV[10], ARGV[11]
local FRAME, REQUEST, BID, DEADLINE = ARGV[12], ARGV[13], ARGV[14], ARGV[15]
local MAX_FACTS, MAX_PER_FRAME = tonumber(ARGV[16]), tonumber(ARGV[17])
local PRE, BYTES = ARGV[18], ARGV[19]

local floor = advance_floor()
if fact(ID, floor) then
  return {'dup', log_end()}
end
if PRE == '1' then
  return {'pre', log_end()}
end
local function no(code, winner)
  return {'no', code, log_end(), winner}
end

-- where it lives: a request in its frame, a fact about a request in the request's
local frame, request, bid
if KIND == 'r' then
  frame = tonumber(FRAME)
else
  request = fact(REQUEST, floor)
  if not request then
    return no('unknown_request')
  end
  if request.kind ~= 'r' then
    return no('not_a_request')
  end
  frame = request.frame
  if BID ~= '' then
    bid = fact(BID, floor)
    if not bid then
      return no('unknown_bid')
    end
    if bid.kind ~= 'b' or bid.request ~= REQUEST then
      return no('bid_of_another_request')
    end
  end
end

-- entitlement (the store's is_entitled): anyone requests, anyone but the requester
-- bids, only the requester accepts, rejects or cancels, only the bidder withdraws
local entitled
if KIND == 'r' then
  entitled = true
elseif KIND == 'b' then
  entitled = AUTHOR ~= request.author
elseif KIND == 'w' then
  entitled = AUTHOR == bid.author
else
  entitled = AUTHOR == request.author
end

if KIND == 'b' or KIND == 'a' then
  if request.closed then
    return no('closed')
  end
end
if KIND == 'a' then
  if bid.answer == 'w' then
    return no('withdrawn')
  end
  if bid.answer then
    return no('answered')
  end
  if bid.dead then
    return no('departed')
  end
  if ge(NOW_US, bid.deadline) then
    return no('expired')
  end
end
if KIND == 'w' and entitled and bid.answer == 'a' then
  local winner = redis.call('HGET', B .. 'f:' .. bid.answer_id, 'v')
  return no('accepted', winner or '')
end

-- capacity: facts in the kept frames (a bidder's withdrawal always fits), and the
-- author's share of the frame (its rejects and withdrawals do not count)
if not (KIND == 'w' and entitled) then
  local total = 0
  for _, f in ipairs(redis.call('ZRANGEBYSCORE', FRAMES, fmt(floor), '+inf')) do
    total = total + tonumber(redis.call('HGET', B .. 'fr:' .. f, 'n') or '0')
  end
  if total >= MAX_FACTS then
    return no('full')
  end
end
local counts = not ((KIND == 'j' or KIND == 'w') and entitled)
local share = B .. 'fr:' .. fmt(frame)
if counts and tonumber(redis.call('HGET', share, 'a' .. AUTHOR) or '0') >= MAX_PER_FRAME then
  return no('too_many')
end

-- stored, with its effects, until its frame is dropped
local ttl = frame_ttl(frame)
local key = B .. 'f:' .. ID
local fields = {'k', KIND, 'a', AUTHOR, 'fr', fmt(frame), 'v', BYTES}
if KIND ~= 'r' then
  fields[#fields + 1] = 'rq'
  fields[#fields + 1] = REQUEST
end
if KIND == 'b' then
  fields[#fields + 1] = 'dl'
  fields[#fields + 1] = DEADLINE
  local mine = B .. 'bids:' .. AUTHOR
  redis.call('ZADD', mine, fmt(frame), ID)
  expire_at_least(mine, ttl)
end
redis.call('DEL', key)
redis.call('HSET', key, unpack(fields))
redis.call('PEXPIRE', key, fmt(ttl))
redis.call('HINCRBY', share, 'n', 1)
if counts then
  redis.call('HINCRBY', share, 'a' .. AUTHOR, 1)
end
expire_at_least(share, ttl)
redis.call('ZADD', FRAMES, fmt(frame), fmt(frame))
expire_at_least(FRAMES, ttl)
if entitled and (KIND == 'a' or KIND == 'c') then
  redis.call('HSET', request.key, 'cl', '1')
end
if entitled and (KIND == 'a' or KIND == 'j' or KIND == 'w') and not bid.answer then
  redis.call('HSET', bid.key, 'an', KIND, 'ai', ID)
end
return {'ok', append('s', BYTES)}
