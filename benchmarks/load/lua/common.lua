-- Prepended to every workload script by benchmarks/common/wrk.py.
-- Counts responses per thread by status (and 4xx/5xx by the error's stable code), keeps a
-- per-thread queue of single-use refresh tokens, and prints one machine-readable line
-- ("BENCH_RESULT {json}") in done(). Unsent tokens go to BENCH_OUT so the harness can
-- hand them to a later run: a token is popped once and never sent twice.
--
-- A script that tags its requests (tagged(), then timed() in response()) also gets the
-- latency of each answer, split into admitted and refused (503/429): the request id it
-- sends in X-Request-ID comes back on the response, so the answer is matched to its
-- request even though wrk's callbacks do not say which connection they belong to.
-- The latencies leave the thread as strings: with two more tables fetched per thread
-- by thread:get() in done(), wrk (4.1, Debian) died of SIGSEGV; strings copy safely.
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local clock = ffi.new("bench_timespec")
local TIMINGS_PER_CHUNK = 200
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
-- "<a|r><kind><us> " per answer (admitted or refused); every full chunk becomes
-- timings_<n>, n = sealed.
sealed = 0
open_timings = ""
local open_count, sent_at, sequence = 0, {}, 0
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

local function now_us()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, clock)
  return tonumber(clock.tv_sec) * 1000000 + tonumber(clock.tv_nsec) / 1000
end

-- ``headers`` with a fresh X-Request-ID, its send time and kind (a word of letters)
-- noted: wrk sends a request as soon as request() returns it.
function tagged(headers, kind)
  sequence = sequence + 1
  local request_id = "bench-" .. id .. "-" .. sequence
  headers["X-Request-ID"] = request_id
  sent_at[request_id] = {now_us(), kind}
  return headers
end

-- Files the answer's latency under admitted or refused, by the echoed request id.
function timed(status, headers)
  local request_id = headers["x-request-id"] or headers["X-Request-ID"]
  local sent = request_id and sent_at[request_id]
  if not sent then return end
  sent_at[request_id] = nil
  local outcome = (status == 503 or status == 429) and "r" or "a"
  open_timings = open_timings .. outcome .. sent[2] .. math.floor(now_us() - sent[1]) .. " "
  open_count = open_count + 1
  if open_count == TIMINGS_PER_CHUNK then
    sealed = sealed + 1
    _G["timings_" .. sealed] = open_timings
    open_timings, open_count = "", 0
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

-- Fills admitted, refused (lists of microseconds) and by_kind[kind] (admitted only).
local function parse_timings(text, admitted, refused, by_kind)
  for outcome, kind, us in string.gmatch(text or "", "(%a)(%a+)(%d+) ") do
    local value = tonumber(us)
    if outcome == "r" then
      refused[#refused + 1] = value
    else
      admitted[#admitted + 1] = value
      by_kind[kind] = by_kind[kind] or {}
      table.insert(by_kind[kind], value)
    end
  end
end

-- Nearest-rank percentile of a sorted list, in whole microseconds (-1: no sample).
local function percentile(sorted, p)
  if #sorted == 0 then return -1 end
  local rank = math.max(1, math.ceil(p / 100 * #sorted))
  return math.floor(sorted[rank])
end

local function encode(t)
  local parts = {}
  for k, v in pairs(t) do table.insert(parts, string.format('"%s":%s', k, tostring(v))) end
  return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
  local status, codes, extra, admitted, refused_lat, by_kind = {}, {}, {}, {}, {}, {}
  local out = os.getenv("BENCH_OUT")
  local file = nil
  if out and out ~= "" then file = io.open(out, "w") end
  for _, thread in ipairs(threads) do
    merge(status, thread:get("status_counts"))
    merge(codes, thread:get("code_counts"))
    merge(extra, thread:get("extra_counts"))
    for n = 1, thread:get("sealed") or 0 do
      parse_timings(thread:get("timings_" .. n), admitted, refused_lat, by_kind)
    end
    parse_timings(thread:get("open_timings"), admitted, refused_lat, by_kind)
    if file then
      local q, head, tail = thread:get("queue"), thread:get("qhead"), thread:get("qtail")
      for i = head, tail - 1 do file:write(q[i], "\n") end
    end
  end
  if file then file:close() end
  local counted, refused = 0, (status["503"] or 0) + (status["429"] or 0)
  for _, n in pairs(status) do counted = counted + n end
  table.sort(admitted)
  table.sort(refused_lat)
  local kinds = {}
  for kind, list in pairs(by_kind) do
    table.sort(list)
    table.insert(kinds, string.format(
      '"%s":[%d,%d,%d]', kind, #list, percentile(list, 50), percentile(list, 99)))
  end
  -- Untagged scripts: refusals answered early would make the slowest 1 % of admitted
  -- requests the slowest (1 % x admitted share) of all; "timed" says which it is.
  local p99_admitted = latency:percentile(99)
  if #admitted > 0 then
    p99_admitted = percentile(admitted, 99)
  elseif counted > 0 and refused > 0 and refused < counted then
    p99_admitted = latency:percentile(100 - (counted - refused) / counted)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"counted":%d,"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,' ..
    '"p99_admitted_us":%d,"max_us":%d,"status":%s,"codes":%s,"extra":%s,' ..
    '"timed":{"admitted":%d,"admitted_p50_us":%d,"refused":%d,"refused_p50_us":%d,' ..
    '"refused_p99_us":%d,"admitted_by_kind":{%s}},' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d}}\n',
    counted, summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    p99_admitted, latency.max, encode(status), encode(codes), encode(extra),
    #admitted, percentile(admitted, 50), #refused_lat, percentile(refused_lat, 50),
    percentile(refused_lat, 99), table.concat(kinds, ","),
    e.connect, e.read, e.write, e.timeout))
end
