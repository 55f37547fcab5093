-- Prepended to every workload script by benchmarks/common/wrk.py.
-- Counts responses per thread by status (and 4xx/5xx by the error's stable code), keeps a
-- per-thread queue of single-use refresh tokens, and prints one machine-readable line
-- ("BENCH_RESULT {json}") in done(). Unsent tokens go to BENCH_OUT so the harness can
-- hand them to a later run: a token is popped once and never sent twice.
local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("id", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

status_counts = {}
code_counts = {}
extra_counts = {}
queue = {}
qhead = 1
qtail = 1
PASSWORD = os.getenv("BENCH_PASSWORD") or ""

function bump(t, key, n)
  t[key] = (t[key] or 0) + (n or 1)
end

function count_response(status, body)
  bump(status_counts, tostring(status))
  if status >= 400 and body then
    local code = string.match(body, '"code"%s*:%s*"([%w_]+)"')
    if code then bump(code_counts, status .. " " .. code) end
  end
end

function read_lines(variable)
  local lines = {}
  local path = os.getenv(variable)
  if path == nil or path == "" then return lines end
  for line in io.lines(path) do
    if line ~= "" then table.insert(lines, line) end
  end
  return lines
end

-- This thread's share of a list (every nth line): no two threads get the same token.
function mine(lines)
  local n = tonumber(os.getenv("BENCH_THREADS") or "1")
  local out = {}
  for i, line in ipairs(lines) do
    if (i - 1) % n == id then table.insert(out, line) end
  end
  return out
end

function push(token)
  queue[qtail] = token
  qtail = qtail + 1
end

function pop()
  if qhead == qtail then return nil end
  local token = queue[qhead]
  queue[qhead] = nil
  qhead = qhead + 1
  return token
end

function refresh_token_of(body)
  return string.match(body, '"refresh_token"%s*:%s*"([^"]+)"')
end

local function merge(into, from)
  for k, v in pairs(from or {}) do into[k] = (into[k] or 0) + v end
end

local function encode(t)
  local parts = {}
  for k, v in pairs(t) do table.insert(parts, string.format('"%s":%s', k, tostring(v))) end
  return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
  local status, codes, extra = {}, {}, {}
  local out = os.getenv("BENCH_OUT")
  local file = nil
  if out and out ~= "" then file = io.open(out, "w") end
  for _, thread in ipairs(threads) do
    merge(status, thread:get("status_counts"))
    merge(codes, thread:get("code_counts"))
    merge(extra, thread:get("extra_counts"))
    if file then
      local q, head, tail = thread:get("queue"), thread:get("qhead"), thread:get("qtail")
      for i = head, tail - 1 do file:write(q[i], "\n") end
    end
  end
  if file then file:close() end
  local counted, refused = 0, (status["503"] or 0) + (status["429"] or 0)
  for _, n in pairs(status) do counted = counted + n end
  -- Refusals are answered early, so the slowest 1 % of admitted requests are the
  -- slowest (1 % x admitted share) of all: exact when refusals are faster, else an
  -- upper bound.
  local p99_admitted = latency:percentile(99)
  if counted > 0 and refused > 0 and refused < counted then
    p99_admitted = latency:percentile(100 - (counted - refused) / counted)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"counted":%d,"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,' ..
    '"p99_admitted_us":%d,"max_us":%d,"status":%s,"codes":%s,"extra":%s,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d}}\n',
    counted, summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    p99_admitted, latency.max, encode(status), encode(codes), encode(extra),
    e.connect, e.read, e.write, e.timeout))
end
