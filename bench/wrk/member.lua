-- PATCH /Groups/{id}: add one member, then remove it again, over a pool of users that
-- are not members of the big group.
dofile(os.getenv("BENCH_DIR") .. "/common.lua")
local ids = {}
for line in io.lines(os.getenv("BENCH_IDS_FILE")) do ids[#ids + 1] = line end
local n = 0
function request()
  n = n + 1
  local id = ids[((math.floor((n - 1) / 2)) % #ids) + 1]
  local op = (n % 2 == 1) and "add" or "remove"
  local body = '{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"' .. op ..
    '","path":"members","value":[{"value":"' .. id .. '"}]}]}'
  return wrk.format("PATCH", wrk.path, nil, body)
end
