-- Shared by the scenario scripts: arguments, pacing to a target rate, and the JSON summary
-- that bench/wrk.py parses (one line starting with "BENCH_JSON ").
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_usec; } bench_timeval;
int gettimeofday(bench_timeval *tv, void *tz);
]]

local lib = {}
local tv = ffi.new("bench_timeval")

local function now_ms()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) * 1000 + tonumber(tv.tv_usec) / 1000
end

-- "key=value" arguments after wrk's "--"; seeds this thread's random numbers.
function lib.init(args)
  local opts = {}
  for _, arg in ipairs(args) do
    local key, value = arg:match("^([%w_]+)=(.*)$")
    if key then
      opts[key] = value
    end
  end
  local seed = tonumber(tostring({}):match("0x(%x+)"), 16) or 0
  math.randomseed((seed + math.floor(now_ms())) % 2147483647)
  lib.thread_tag = string.format("%x%x", seed % 1048576, math.random(0, 1048575))
  local rate = tonumber(opts.rate or "")
  if rate and rate > 0 then
    -- A schedule shared by this thread's connections: request n is due at start + n/rate.
    -- A connection whose slot is in the future waits for it; one that is late sends at once
    -- (the service is behind, and the achieved rate shows it).
    local interval = 1000 / rate
    local next_at = nil
    delay = function()
      local now = now_ms()
      if next_at == nil then
        next_at = now
      end
      local slot = next_at
      next_at = next_at + interval
      if slot <= now then
        return 0
      end
      return math.floor(slot - now)
    end
  end
  return opts
end

function lib.done(summary, latency, requests)
  local quantiles = {}
  for i = 1, 199 do
    quantiles[#quantiles + 1] = string.format("%d", latency:percentile(i * 0.5))
  end
  quantiles[#quantiles + 1] = string.format("%d", latency:percentile(99.9))
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"duration_us": %d, "requests": %d, "bytes": %d, "errors": {"connect": %d,'
      .. ' "read": %d, "write": %d, "status": %d, "timeout": %d}, "latency_us": {"mean": %.1f,'
      .. ' "max": %d, "p50": %d, "p90": %d, "p95": %d, "p99": %d, "p999": %d},'
      .. ' "quantiles_us": [%s]}\n',
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(95), latency:percentile(99), latency:percentile(99.9),
    table.concat(quantiles, ", ")
  ))
end

return lib
