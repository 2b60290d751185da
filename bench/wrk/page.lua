-- GET /Users?startIndex=…&count=100, walking the pages in order, again and again.
dofile(os.getenv("BENCH_DIR") .. "/common.lua")
local users = tonumber(os.getenv("BENCH_USERS"))
local n = 0
function request()
  local start = (n * 100) % users + 1
  n = n + 1
  return wrk.format("GET", wrk.path .. "?startIndex=" .. start .. "&count=100")
end
