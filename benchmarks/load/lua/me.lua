-- GET /api/v1/auth/me with a pool of access tokens (BENCH_ACCESS: one a line).
local token_headers, next_token = {}, 0

function init(args)
  for _, token in ipairs(read_lines("BENCH_ACCESS")) do
    table.insert(token_headers, {Authorization = "Bearer " .. token})
  end
end

function request()
  next_token = next_token % #token_headers + 1
  return wrk.format("GET", "/api/v1/auth/me", token_headers[next_token])
end

function response(status, headers, body)
  count_response(status, body)
end
