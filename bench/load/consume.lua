-- POST /v1/consumptions, one credit, a unique idempotency key per request, keys of many organizations.
-- DELAY_MS (optional) paces each connection, to load at a chosen fraction of peak.
-- Each thread formats every key's request once, in init, split around the idempotency key, so that a request
-- costs the generator (which shares the server's two cores) a lookup and one concatenation.
local keys = {}
for line in io.lines(os.getenv("KEYS")) do keys[#keys + 1] = line end
local delay_ms = tonumber(os.getenv("DELAY_MS") or "0")
local placeholder = "IDEMPOTENCY-KEY-PLACEHOLDER"
local counter = 0
local prefix = ""
local heads, tails = {}, {}
math.randomseed(os.time())
setup = function(thread)
  thread:set("thread_prefix", string.format("%d-%d-", os.time(), math.random(1, 1000000000)))
end
init = function(args)
  prefix = thread_prefix or string.format("%d-%d-", os.time(), math.random(1, 1000000000))
  math.randomseed(os.time() + math.random(1, 1000000))
  for index, key in ipairs(keys) do
    local whole = wrk.format("POST", "/v1/consumptions", {
      ["Authorization"] = "Bearer " .. key,
      ["Idempotency-Key"] = placeholder,
      ["Content-Type"] = "application/json",
    }, '{"credits":1}')
    local at = string.find(whole, placeholder, 1, true)
    heads[index] = string.sub(whole, 1, at - 1) .. prefix
    tails[index] = string.sub(whole, at + #placeholder)
  end
end
request = function()
  counter = counter + 1
  local index = math.random(#heads)
  return heads[index] .. counter .. tails[index]
end
if delay_ms > 0 then
  delay = function() return delay_ms end
end
done = function(summary, latency, requests)
  io.write(string.format("non2xx=%d\n", summary.errors.status))
  io.write(string.format("p50_us=%d p99_us=%d\n", latency:percentile(50), latency:percentile(99)))
end
