-- POST /api/v1/auth/introspect (RFC 7662, form body) as a service client (BENCH_CLIENT:
-- the "Basic ..." header value) about access tokens of BENCH_ACCESS. A 200 that says
-- the token is inactive is counted as "inactive": it would mean the workload is wrong.
local tokens, next_token = {}, 0
local headers = {["Content-Type"] = "application/x-www-form-urlencoded"}

function init(args)
  tokens = read_lines("BENCH_ACCESS")
  headers["Authorization"] = read_lines("BENCH_CLIENT")[1]
end

function request()
  next_token = next_token % #tokens + 1
  return wrk.format("POST", "/api/v1/auth/introspect", headers, "token=" .. tokens[next_token])
end

function response(status, headers, body)
  count_response(status, body)
  if status == 200 and not string.find(body, '"active":true', 1, true) then
    bump(extra_counts, "inactive")
  end
end
