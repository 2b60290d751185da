-- GET /Users?filter=userName eq "seed-K@bench.example" for random seeded K.
dofile(os.getenv("BENCH_DIR") .. "/common.lua")
local users = tonumber(os.getenv("BENCH_USERS"))
function request()
  local k = math.random(0, users - 1)
  return wrk.format("GET", wrk.path .. "?filter=userName%20eq%20%22seed-" .. k .. "%40bench.example%22")
end
