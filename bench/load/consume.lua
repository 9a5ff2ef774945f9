-- POST /v1/consumptions, one credit, a unique idempotency key per request, keys of many organizations.
-- DELAY_MS (optional) paces each connection, to load at a chosen fraction of peak.
local keys = {}
for line in io.lines(os.getenv("KEYS")) do keys[#keys + 1] = line end
local delay_ms = tonumber(os.getenv("DELAY_MS") or "0")
local counter = 0
local prefix = ""
math.randomseed(os.time())
setup = function(thread)
  thread:set("thread_prefix", string.format("%d-%d-", os.time(), math.random(1, 1000000000)))
end
init = function(args)
  prefix = thread_prefix or string.format("%d-%d-", os.time(), math.random(1, 1000000000))
end
request = function()
  counter = counter + 1
  local key = keys[math.random(#keys)]
  return wrk.format("POST", "/v1/consumptions", {
    ["Authorization"] = "Bearer " .. key,
    ["Idempotency-Key"] = prefix .. counter,
    ["Content-Type"] = "application/json",
  }, '{"credits":1}')
end
if delay_ms > 0 then
  delay = function() return delay_ms end
end
done = function(summary, latency, requests)
  io.write(string.format("non2xx=%d\n", summary.errors.status))
  io.write(string.format("p50_us=%d p99_us=%d\n", latency:percentile(50), latency:percentile(99)))
end
