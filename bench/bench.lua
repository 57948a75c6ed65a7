-- wrk script for bench/bench.py: cycles through pre-issued tokens, counts status codes.
--
-- Environment (set by bench.py):
--   BENCH_METHOD, BENCH_PATH   the request line
--   BENCH_TOKENS               file with one bearer token per line ("-" or unset: no token),
--                              optionally followed by a tab and a solved challenge (X-Altcha)
--   BENCH_ORDER                file with one 1-based token index per line: the global sequence
--   BENCH_STOP_AT_SOLD_OUT     "1": a thread stops 2 s after its first 409 (the sale is over;
--                              the wait lets 201s still in flight arrive and be counted)
--   BENCH_THREADS              wrk -t, so each thread knows its share
--   BENCH_DONE_DIR             a stopping thread leaves a file here (wrk itself runs to -d,
--                              so bench.py interrupts it once every thread is done)
-- Thread k of n sends entries k, k+n, k+2n, ... of the sequence and stops after its share.
-- done() prints one line "BENCH_RESULT {json}" that bench.py parses.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local clock = ffi.new("bench_timespec")
local function now_us()
  ffi.C.clock_gettime(1, clock) -- CLOCK_MONOTONIC: comparable across threads
  return tonumber(clock.tv_sec) * 1000000 + tonumber(clock.tv_nsec) / 1000
end

local function read_lines(path)
  local lines = {}
  for line in io.lines(path) do
    lines[#lines + 1] = line
  end
  return lines
end

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  threads[#threads + 1] = thread
end

function init(args)
  nthreads = tonumber(os.getenv("BENCH_THREADS"))
  local method = os.getenv("BENCH_METHOD") or "GET"
  local path = os.getenv("BENCH_PATH") or "/"
  local tokens_file = os.getenv("BENCH_TOKENS")
  requests = {}
  if tokens_file and tokens_file ~= "-" then
    for i, line in ipairs(read_lines(tokens_file)) do
      -- "token" or "token<TAB>solved challenge" (sent as X-Altcha)
      local token, solution = line:match("^([^\t]+)\t?(.*)$")
      local headers = { ["Authorization"] = "Bearer " .. token }
      if solution ~= "" then
        headers["X-Altcha"] = solution
      end
      requests[i] = wrk.format(method, path, headers)
    end
  else
    requests[1] = wrk.format(method, path)
  end
  order = {}
  local sequence = read_lines(os.getenv("BENCH_ORDER"))
  for i = id + 1, #sequence, nthreads do
    order[#order + 1] = tonumber(sequence[i])
  end
  stop_at_sold_out = os.getenv("BENCH_STOP_AT_SOLD_OUT") == "1"
  position = 0
  answered = 0
  statuses = {}
  first_request_us = 0
  last_created_us = 0
  last_answer_us = 0
  answered_at_last_created = 0
  stopping = false
  sold_out_at_us = 0
end

function request()
  if first_request_us == 0 then
    first_request_us = now_us()
  end
  position = position + 1
  local index = order[position]
  if index == nil then
    -- past this thread's share: repeat the last request until the stop lands
    index = order[#order]
  end
  return requests[index]
end

function response(status, headers, body)
  if stopping then
    return
  end
  answered = answered + 1
  last_answer_us = now_us()
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if status == 201 then
    last_created_us = last_answer_us
    answered_at_last_created = answered
  end
  if stop_at_sold_out and status == 409 and sold_out_at_us == 0 then
    sold_out_at_us = last_answer_us
  end
  if answered >= #order or (sold_out_at_us > 0 and last_answer_us - sold_out_at_us > 2000000) then
    stopping = true
    wrk.thread:stop()
    local marker = io.open(os.getenv("BENCH_DONE_DIR") .. "/" .. id, "w")
    marker:close()
  end
end

function done(summary, latency, requests_)
  local parts = {}
  local first, last, answered_total, until_last, finished = nil, 0, 0, 0, 0
  local merged = {}
  for _, thread in ipairs(threads) do
    local started = thread:get("first_request_us")
    if started and started > 0 and (first == nil or started < first) then
      first = started
    end
    last = math.max(last, thread:get("last_created_us") or 0)
    finished = math.max(finished, thread:get("last_answer_us") or 0)
    answered_total = answered_total + (thread:get("answered") or 0)
    until_last = until_last + (thread:get("answered_at_last_created") or 0)
    for code, count in pairs(thread:get("statuses") or {}) do
      merged[code] = (merged[code] or 0) + count
    end
  end
  for code, count in pairs(merged) do
    parts[#parts + 1] = string.format('"%s": %d', code, count)
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"duration_us": %d, "requests": %d, "answered": %d, "statuses": {%s}, '
      .. '"first_request_us": %.0f, "last_created_us": %.0f, "last_answer_us": %.0f, '
      .. '"answered_until_last_created": %d, '
      .. '"p50_us": %d, "p99_us": %d, "max_us": %d, '
      .. '"socket_errors": %d, "timeouts": %d}\n',
    summary.duration, summary.requests, answered_total, table.concat(parts, ", "),
    first or 0, last, finished, until_last,
    latency:percentile(50), latency:percentile(99), latency.max,
    errors.connect + errors.read + errors.write, errors.timeout
  ))
end
