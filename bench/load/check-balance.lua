-- GET /api/v1/agents/check-balance (or TALLY_PATH) with the keys of many organizations, one picked per request.
-- Reads "pk:sk" lines from the file named by the KEYS environment variable. Each thread formats one request per
-- key once, in init, so a request costs the generator one table lookup: the generator shares the server's two
-- cores. (The T1 anchor, hello, is loaded with hello.lua's static request, which costs the generator less still.)
local keys = {}
for line in io.lines(os.getenv("KEYS")) do keys[#keys + 1] = line end
local path = os.getenv("TALLY_PATH") or "/api/v1/agents/check-balance"
local requests = {}
init = function(args)
  local file = io.open("/dev/urandom", "rb")
  local bytes = file:read(4)
  file:close()
  math.randomseed(((bytes:byte(1) * 256 + bytes:byte(2)) * 256 + bytes:byte(3)) * 256 + bytes:byte(4))
  for index, key in ipairs(keys) do
    requests[index] = wrk.format("GET", path, { ["Authorization"] = "Bearer " .. key })
  end
end
request = function()
  return requests[math.random(#requests)]
end
done = function(summary, latency, requests)
  io.write(string.format("non2xx=%d\n", summary.errors.status))
end
