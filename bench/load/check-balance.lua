-- GET /api/v1/agents/check-balance with the keys of many organizations, one picked per request.
-- Reads "pk:sk" lines from the file named by the KEYS environment variable.
local keys = {}
for line in io.lines(os.getenv("KEYS")) do keys[#keys + 1] = line end
local path = os.getenv("TALLY_PATH") or "/api/v1/agents/check-balance"
math.randomseed(os.time())
request = function()
  local key = keys[math.random(#keys)]
  return wrk.format("GET", path, { ["Authorization"] = "Bearer " .. key })
end
done = function(summary, latency, requests)
  io.write(string.format("non2xx=%d\n", summary.errors.status))
end
