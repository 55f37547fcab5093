-- POST /api/v1/auth/refresh with chained single-use tokens: each response's new refresh
-- token goes back into this thread's queue and is sent by the next request, so a token
-- is never sent twice (reuse would revoke its family). BENCH_REFRESH holds one fresh
-- token a line, shared out between threads. An empty queue sends GET /health instead,
-- counted as "refresh_starved" and left out of the totals.
local headers = {["Content-Type"] = "application/json"}

function init(args)
  for _, token in ipairs(mine(read_lines("BENCH_REFRESH"))) do push(token) end
end

function request()
  local token = pop()
  if token == nil then
    bump(extra_counts, "refresh_starved")
    return wrk.format("GET", "/health", {})
  end
  return wrk.format("POST", "/api/v1/auth/refresh", headers, '{"refresh_token":"' .. token .. '"}')
end

function response(status, headers, body)
  if status == 200 and string.find(body, '"healthy"', 1, true) then return end
  count_response(status, body)
  if status == 200 then
    local token = refresh_token_of(body)
    if token then push(token) end
  end
end
