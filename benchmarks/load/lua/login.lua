-- POST /api/v1/auth/login, cycling through a pool of users (BENCH_USERS: one email a
-- line). The refresh tokens it receives are fresh and unused: they are kept for later runs.
local users, next_user = {}, 0
local headers = {["Content-Type"] = "application/json"}

function init(args)
  users = read_lines("BENCH_USERS")
end

function request()
  next_user = next_user % #users + 1
  local body = '{"email":"' .. users[next_user] .. '","password":"' .. PASSWORD .. '"}'
  return wrk.format("POST", "/api/v1/auth/login", headers, body)
end

function response(status, headers, body)
  count_response(status, body)
  if status == 200 then
    local token = refresh_token_of(body)
    if token then push(token) end
  end
end
