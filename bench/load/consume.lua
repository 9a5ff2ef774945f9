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
-- Seeds and key prefixes come from /dev/urandom: wrk processes started in the same second (T7 runs three) got
-- the same os.time() seed, and so sent the same idempotency keys for the same organizations.
local function entropy()
  local file = io.open("/dev/urandom", "rb")
  local bytes = file:read(6)
  file:close()
  local value = 0
  for index = 1, #bytes do value = value * 256 + bytes:byte(index) end
  return value
end
setup = function(thread)
  thread:set("thread_prefix", string.format("%.0f-", entropy()))
end
init = function(args)
  prefix = thread_prefix or string.format("%.0f-", entropy())
  math.randomseed(entropy())
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
