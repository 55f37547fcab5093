-- The mixed workload: per thread, 1 login : 10 refresh : 100 GET /me, in a fixed cycle of
-- 111 requests. Refresh tokens are chained as in refresh.lua, and every login adds a
-- fresh one to the queue; with the queue empty a refresh slot becomes a GET /me
-- (counted as "refresh_starved"). Every request is tagged, so admitted and refused
-- answers have latencies of their own.
local users, next_user = {}, 0
local token_headers, next_token = {}, 0
local json_headers = {["Content-Type"] = "application/json"}
local slot = 0

function init(args)
  users = read_lines("BENCH_USERS")
  for _, token in ipairs(read_lines("BENCH_ACCESS")) do
    table.insert(token_headers, {Authorization = "Bearer " .. token})
  end
  for _, token in ipairs(mine(read_lines("BENCH_REFRESH"))) do push(token) end
end

local function me()
  next_token = next_token % #token_headers + 1
  return wrk.format("GET", "/api/v1/auth/me", tagged(token_headers[next_token], "me"))
end

function request()
  slot = slot % 111 + 1
  if slot == 1 then
    next_user = next_user % #users + 1
    local body = '{"email":"' .. users[next_user] .. '","password":"' .. PASSWORD .. '"}'
    return wrk.format("POST", "/api/v1/auth/login", tagged(json_headers, "login"), body)
  elseif slot <= 11 then
    local token = pop()
    if token == nil then
      bump(extra_counts, "refresh_starved")
      return me()
    end
    return wrk.format(
      "POST", "/api/v1/auth/refresh", tagged(json_headers, "refresh"), '{"refresh_token":"' .. token .. '"}'
    )
  end
  return me()
end

function response(status, headers, body)
  timed(status, headers)
  count_response(status, body)
  if status == 200 then
    local token = refresh_token_of(body)
    if token then push(token) end
  end
end
